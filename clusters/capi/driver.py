"""The ``capi`` driver: a cluster made by Cluster API on a management cluster Corral manages.

Corral writes one object into the management cluster, a Cluster with a managed topology (its class,
version, control-plane replicas and worker pools, the class's variables), labelled as Corral's;
CAPI does the rest.  Provisioning follows the Cluster's conditions until its control plane is
available, then reads the kubeconfig Secret CAPI wrote and manages the cluster like any other.
Scaling and upgrading change the topology and follow the machines; removal deletes the Cluster and
waits until CAPI has deleted everything it made.
"""

import base64
import time

from django.conf import settings

from clusters.capi import API, CLUSTER_NAME_LABEL, MANAGED_BY, labels
from clusters.capi.classes import CapiError
from clusters.capi.progress import failure, machines_summary, provisioning, reached, settled
from clusters.kube.client import api_client
from clusters.kube.workloads import WorkloadError, call

POLL_SECONDS = 2


class Gone(Exception):
    """The Cluster object is not in the management cluster."""


def management_cluster(cluster):
    from clusters.models import Cluster

    mc = Cluster.objects.filter(pk=(cluster.driver_config or {}).get("management_cluster"), is_management=True).first()
    if mc is None:
        raise CapiError(409, "its management cluster is no longer a management cluster in Corral")
    return mc


def capi_name(cluster):
    return cluster.slug


def namespace(cluster):
    return (cluster.driver_config or {}).get("namespace") or "default"


def _path(cluster, name=None):
    return f"{API}/namespaces/{namespace(cluster)}/clusters" + (f"/{name}" if name else "")


def topology(config):
    return {
        "classRef": {"name": config["class"]},
        "version": config["version"],
        "controlPlane": {"replicas": config.get("control_plane_replicas", 1)},
        # CAPI refuses an empty list: a cluster without worker pools has no "workers" at all.
        **({"workers": {"machineDeployments": [{"name": p["name"], "class": p["class"], "replicas": p.get("replicas", 1)}
                                               for p in config["workers"]]}} if config.get("workers") else {}),
        **({"variables": [{"name": k, "value": v} for k, v in sorted(config["variables"].items())]} if config.get("variables") else {}),
    }


def cluster_object(cluster):
    config = cluster.driver_config
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
        "metadata": {"name": capi_name(cluster), "namespace": namespace(cluster), "labels": labels(cluster),
                     "annotations": {"corral.io/cluster-name": cluster.name}},
        # clusterctl's usual networks: kubeadm needs them for the control plane's certificates and Services.
        "spec": {"clusterNetwork": {"services": {"cidrBlocks": ["10.128.0.0/12"]}, "pods": {"cidrBlocks": ["192.168.0.0/16"]},
                                    "serviceDomain": "cluster.local"},
                 "topology": topology(config)},
    }


def unanswered_only(exc):
    """The management cluster's API server did not answer (timeout, connection) or answered 5xx:
    worth asking again, unlike a refusal."""
    return exc.cluster_status is None or exc.cluster_status >= 500


class Patience:
    """A wait on the management cluster: a poll it does not answer (a busy API server) is said
    once in the operation and asked again until the wait's deadline; what it refuses is final."""

    def __init__(self, progress):
        self.progress, self.said = progress, None

    def answered(self):
        self.said = None

    def missed(self, exc, percent):
        if not unanswered_only(exc):
            raise exc
        if exc.message != self.said:
            self.progress(percent, f"the management cluster did not answer ({exc.message}); asking again")
            self.said = exc.message


def read(api, cluster):
    try:
        return call(api, "GET", _path(cluster, capi_name(cluster)))
    except WorkloadError as exc:
        if exc.cluster_status == 404:
            raise Gone() from None
        raise


def ours(obj, cluster):
    return ((obj.get("metadata") or {}).get("labels") or {}).get("corral.io/cluster-id") == str(cluster.pk)


def machines(api, cluster):
    selector = f"{CLUSTER_NAME_LABEL}={capi_name(cluster)}"
    return call(api, "GET", f"{API}/namespaces/{namespace(cluster)}/machines?labelSelector={selector}").get("items") or []


def warnings(api, cluster, seen):
    """CAPI's Warning events about the cluster and what it made, not reported before (``seen``)."""
    try:
        items = call(api, "GET", f"/api/v1/namespaces/{namespace(cluster)}/events?fieldSelector=type%3DWarning").get("items") or []
    except WorkloadError:
        return []
    name, new = capi_name(cluster), []
    for event in items:
        involved = event.get("involvedObject") or {}
        key = ((event.get("metadata") or {}).get("uid"), event.get("count"))
        if key in seen or not (involved.get("name") == name or str(involved.get("name", "")).startswith(name + "-")):
            continue
        seen.add(key)
        new.append(f"warning from {involved.get('kind')} {involved.get('name')}: {event.get('reason')}: {event.get('message')}")
    return new


def _ensure_namespace(api, cluster):
    ns = namespace(cluster)
    try:
        call(api, "GET", f"/api/v1/namespaces/{ns}")
    except WorkloadError as exc:
        if exc.cluster_status != 404:
            raise
        call(api, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": ns, "labels": {MANAGED_BY: "corral"}}})


def _credentials(api, cluster):
    from clusters.kube.importer import ImportProblem, credentials_from_kubeconfig

    secret = call(api, "GET", f"/api/v1/namespaces/{namespace(cluster)}/secrets/{capi_name(cluster)}-kubeconfig")
    text = base64.b64decode((secret.get("data") or {}).get("value", "")).decode()
    try:
        return credentials_from_kubeconfig(text)
    except ImportProblem as exc:
        raise CapiError(502, f"the kubeconfig Secret CAPI wrote cannot be used: {exc.message}") from None


class CapiDriver:
    provisions = True

    def provision(self, cluster, progress):
        """Write the Cluster (once: a redelivered task finds it), follow it until its control
        plane is available and its machines run; returns (endpoint, credentials)."""
        from clusters.drivers import DriverError

        mc = management_cluster(cluster)
        api = api_client(mc.credentials)
        try:
            progress(8, f"writing Cluster {namespace(cluster)}/{capi_name(cluster)} into the management cluster {mc.name}")
            try:
                existing = read(api, cluster)
                if not ours(existing, cluster):
                    raise DriverError(f"the management cluster already has a Cluster {namespace(cluster)}/{capi_name(cluster)} "
                                      "that Corral did not make")
            except Gone:
                _ensure_namespace(api, cluster)
                call(api, "POST", _path(cluster), cluster_object(cluster))
            deadline, credentials, seen, said = time.monotonic() + settings.CAPI_PROVISION_TIMEOUT, None, set(), None
            announced, counted, patience, percent, words = set(), None, Patience(progress), 8, "Cluster API has not reported yet"
            while True:
                try:
                    obj = read(api, cluster)
                    for condition, at, words in reached(obj):  # each milestone a line, even when two came between polls
                        if condition not in announced:
                            announced.add(condition)
                            progress(at, f"{words} ({condition})")
                    percent, words = provisioning(obj)
                    if words != said:
                        progress(percent, words)
                        said = words
                    for line in warnings(api, cluster, seen):
                        progress(percent, line)
                    problem = failure(obj)
                    if problem:
                        raise DriverError(problem)
                    if credentials is None and percent >= 65:
                        credentials = _credentials(api, cluster)
                        progress(percent, f"read the kubeconfig Secret {capi_name(cluster)}-kubeconfig; the API server is {credentials['server']}")
                    if percent >= 95:
                        # CAPI's conditions may count a pool available early: done when every machine asked
                        # for is available and up to date (the Cluster's replica counts).
                        summary = machines_summary(machines(api, cluster))
                        if summary != counted:
                            progress(95, summary)
                            counted = summary
                        if settled(obj, sum(p.get("replicas", 1) for p in cluster.driver_config.get("workers", []))):
                            return credentials["server"], credentials
                    patience.answered()
                except WorkloadError as exc:  # bench/capi.py: 20 clusters at once on a loaded host
                    patience.missed(exc, percent)
                if time.monotonic() > deadline:
                    raise DriverError(f"not ready after {settings.CAPI_PROVISION_TIMEOUT}s: {words}")
                time.sleep(POLL_SECONDS)
        except Gone:
            raise DriverError("the Cluster was deleted from the management cluster while it was being made") from None
        except (WorkloadError, CapiError) as exc:
            raise DriverError(exc.message) from None
        finally:
            api.close()

    def teardown(self, cluster, progress):
        """Delete the Cluster and wait until CAPI has removed it (and its machines)."""
        from clusters.drivers import DriverError

        try:
            mc = management_cluster(cluster)
        except CapiError as exc:
            progress(30, f"{exc.message}: only Corral's records are removed")
            return
        api = api_client(mc.credentials)
        try:
            try:
                obj = read(api, cluster)
            except Gone:
                progress(30, "the Cluster is not in the management cluster (deleted already)")
                return
            if not ours(obj, cluster):
                progress(30, "the management cluster's Cluster of that name is not Corral's: left alone")
                return
            if not (obj.get("metadata") or {}).get("deletionTimestamp"):
                call(api, "DELETE", _path(cluster, capi_name(cluster)))
            progress(20, "Cluster API is deleting the cluster's machines and infrastructure")
            deadline, said, seen, patience = time.monotonic() + settings.CAPI_PROVISION_TIMEOUT, None, set(), Patience(progress)
            while True:
                try:
                    read(api, cluster)
                    words = machines_summary(machines(api, cluster))
                    if words != said:
                        progress(40, f"deleting: {words}")
                        said = words
                    for line in warnings(api, cluster, seen):
                        progress(40, line)
                    patience.answered()
                except Gone:
                    progress(75, "Cluster API has deleted the cluster")
                    return
                except WorkloadError as exc:
                    patience.missed(exc, 40)
                if time.monotonic() > deadline:
                    raise DriverError(f"Cluster API has not finished deleting after {settings.CAPI_PROVISION_TIMEOUT}s ({said})")
                time.sleep(POLL_SECONDS)
        except (WorkloadError, CapiError) as exc:
            raise DriverError(exc.message) from None
        finally:
            api.close()

    def change(self, cluster, progress, replicas=None, version=None):
        """Scale pools (``replicas``: pool name -> count) and/or upgrade the version; follow the
        machines until CAPI has caught up.  Returns the new driver_config."""
        from clusters.drivers import DriverError

        mc = management_cluster(cluster)
        api = api_client(mc.credentials)
        try:
            for attempt in range(5):
                obj = read(api, cluster)
                topo = obj["spec"]["topology"]
                if version:
                    topo["version"] = version
                for pool in (topo.get("workers") or {}).get("machineDeployments") or []:
                    if replicas and pool["name"] in replicas:
                        pool["replicas"] = replicas[pool["name"]]
                try:
                    call(api, "PUT", _path(cluster, capi_name(cluster)), obj)
                    break
                except WorkloadError as exc:
                    if exc.cluster_status != 409 or attempt == 4:
                        raise
            what = ", ".join([*(f"pool {p} to {n}" for p, n in (replicas or {}).items()), *([f"version {version}"] if version else [])])
            progress(10, f"Cluster topology changed: {what}; Cluster API rolls the machines")
            wanted = sum(p.get("replicas", 1) for p in (topo.get("workers") or {}).get("machineDeployments") or [])
            deadline, said, seen, patience = time.monotonic() + settings.CAPI_PROVISION_TIMEOUT, None, set(), Patience(progress)
            while True:
                try:
                    obj = read(api, cluster)
                    listed = machines(api, cluster)
                    patience.answered()
                except WorkloadError as exc:
                    patience.missed(exc, 50)
                else:
                    words = machines_summary(listed, version)
                    if words != said:
                        progress(50, words)
                        said = words
                    for line in warnings(api, cluster, seen):
                        progress(50, line)
                    problem = failure(obj)
                    if problem:
                        raise DriverError(problem)
                    on_version = not version or all((m.get("spec") or {}).get("version") == version for m in listed)
                    if settled(obj, wanted) and on_version and not any((m.get("metadata") or {}).get("deletionTimestamp") for m in listed):
                        break
                if time.monotonic() > deadline:
                    raise DriverError(f"Cluster API has not caught up after {settings.CAPI_PROVISION_TIMEOUT}s ({said})")
                time.sleep(POLL_SECONDS)
        except Gone:
            raise DriverError("the Cluster is not in the management cluster (deleted outside Corral)") from None
        except (WorkloadError, CapiError) as exc:
            raise DriverError(exc.message) from None
        finally:
            api.close()
        config = dict(cluster.driver_config)
        if version:
            config["version"] = version
        config["workers"] = [{**p, "replicas": (replicas or {}).get(p["name"], p.get("replicas", 1))} for p in config.get("workers", [])]
        return config

    def still_there(self, cluster):
        """False when the Cluster was deleted from the management cluster outside Corral; None
        when that cannot be told now (the management cluster does not answer)."""
        try:
            mc = management_cluster(cluster)
        except CapiError:
            return None
        try:
            api = api_client(mc.credentials)
        except Exception:  # noqa: BLE001 - no answer is no verdict
            return None
        try:
            obj = read(api, cluster)
            return ours(obj, cluster) and not (obj.get("metadata") or {}).get("deletionTimestamp")
        except Gone:
            return False
        except WorkloadError:
            return None
        finally:
            api.close()
