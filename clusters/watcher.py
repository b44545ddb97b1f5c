"""The live watcher: its own process (``manage.py watch_clusters``), next to the Celery worker.

For every monitored cluster it lists the inventory once (a full sync, which also yields the
resourceVersions), then follows a watch per resource from there, applying each change to the
database and emitting it to the cluster's websocket group after commit.  A watch that expires
(410 Gone) makes the cluster relist once; a cluster that stops answering is retried by the same
thread with capped backoff, so nothing piles up while it is down.
"""

import json
import logging
import threading
import time

from django.db import close_old_connections, connection, transaction
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from clusters import sync
from clusters.events import cluster_changed
from clusters.kube.client import api_client
from clusters.kube.inventory import RESOURCES, apply_change
from clusters.models import Cluster, ClusterState
from portal.events import emit

log = logging.getLogger(__name__)

WATCHED = ["namespaces", "nodes", "pods", "services", "deployments", "statefulsets", "daemonsets", "jobs", "cronjobs"]
WATCH_SECONDS = 240
SUMMARY_INTERVAL = 1.0


class Gone(Exception):
    """The resourceVersion is too old (410): relist."""


def pod_payload(pod):
    return {
        "id": pod.pk, "uid": pod.uid, "name": pod.name, "namespace_id": pod.namespace_id, "workload": pod.workload_id,
        "phase": pod.phase, "ready": pod.ready, "restarts": pod.restarts, "node_name": pod.node_name,
    }


def object_payload(resource, instance):
    if resource == "pods":
        return pod_payload(instance)
    data = {"id": instance.pk, "uid": instance.uid, "name": instance.name}
    for field in ("ready", "phase", "kind", "desired_replicas", "ready_replicas", "namespace_id"):
        if hasattr(instance, field):
            data[field] = getattr(instance, field)
    return data


class ClusterWatch:
    """All the watches of one cluster."""

    def __init__(self, cluster_id, fingerprint):
        self.cluster_id = cluster_id
        self.fingerprint = fingerprint
        self.stop_event = threading.Event()
        self.versions = {}
        self.relist_lock = threading.Lock()
        self.threads = []
        self.summary_pending = False
        self.responses = set()

    def start(self):
        thread = threading.Thread(target=self._main, name=f"watch-cluster-{self.cluster_id}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self, wait=0):
        """Stop every watch; open streams are closed so threads end at once."""
        self.stop_event.set()
        for response in list(self.responses):
            try:
                response.shutdown() if hasattr(response, "shutdown") else response.close()
            except Exception:
                pass
        deadline = time.monotonic() + wait
        for thread in self.threads:
            thread.join(timeout=max(0, deadline - time.monotonic()))

    # --- listing ----------------------------------------------------------------------------

    def relist(self):
        """Full sync; refreshes every resource's starting resourceVersion."""
        with self.relist_lock:
            versions = {}
            sync.sync(self.cluster_id, versions=versions)
            self.versions.update(versions)

    def _main(self):
        backoff = 1
        while not self.stop_event.is_set():
            try:
                close_old_connections()
                self.relist()
                break
            except sync.SyncBusy:
                time.sleep(1)
            except Exception as exc:
                log.warning("cluster %s: initial list failed (%s); retrying in %ss", self.cluster_id, exc, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30)
        for resource in WATCHED:
            thread = threading.Thread(target=self._watch_loop, args=(resource,), name=f"watch-{self.cluster_id}-{resource}", daemon=True)
            thread.start()
            self.threads.append(thread)
        while not self.stop_event.wait(SUMMARY_INTERVAL):
            self._flush_summary()
        connection.close()

    # --- watching ---------------------------------------------------------------------------

    def _watch_loop(self, resource):
        try:
            self._watch_forever(resource)
        finally:
            connection.close()

    def _watch_forever(self, resource):
        backoff = 1
        while not self.stop_event.is_set():
            try:
                close_old_connections()
                self._watch_once(resource)
                backoff = 1
            except Gone:
                log.info("cluster %s: %s watch expired (410); relisting", self.cluster_id, resource)
                try:
                    self.relist()
                except Exception as exc:
                    log.warning("cluster %s: relist failed: %s", self.cluster_id, exc)
                    self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, 30)
            except Exception as exc:
                if self.stop_event.is_set():
                    return
                log.info("cluster %s: %s watch interrupted (%s); retrying in %ss", self.cluster_id, resource, exc, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30)

    def _watch_once(self, resource):
        cluster = Cluster.objects.get(pk=self.cluster_id)
        api = api_client(cluster.credentials)
        try:
            params = [("watch", "1"), ("allowWatchBookmarks", "true"), ("timeoutSeconds", WATCH_SECONDS)]
            if self.versions.get(resource):
                params.append(("resourceVersion", self.versions[resource]))
            try:
                response = api.call_api(
                    RESOURCES[resource], "GET", query_params=params, header_params={"Accept": "application/json"},
                    auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                    _request_timeout=(api.corral_timeout, WATCH_SECONDS + 30),
                )
            except ApiException as exc:
                if exc.status == 410:
                    raise Gone() from exc
                raise
            self.responses.add(response)
            try:
                for line in iter_resp_lines(response):
                    if self.stop_event.is_set():
                        return
                    if line:
                        self._handle(cluster, resource, json.loads(line))
            finally:
                self.responses.discard(response)
                response.release_conn()
        finally:
            api.close()

    def _handle(self, cluster, resource, event):
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise RuntimeError(obj.get("message", "watch error"))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            self.versions[resource] = version
            return
        with transaction.atomic():
            instance, deleted_uid = apply_change(cluster, resource, kind, obj)
            singular = resource[:-1]
            if deleted_uid is not None:
                emit(f"{singular}.deleted", {"uid": deleted_uid, "name": obj["metadata"].get("name")}, f"cluster-{cluster.pk}")
            elif instance is not None:
                emit(f"{singular}.updated", object_payload(resource, instance), f"cluster-{cluster.pk}")
        if version:
            self.versions[resource] = version
        if resource in ("pods", "nodes"):
            self.summary_pending = True

    def _flush_summary(self):
        """Tell the dashboard the cluster's figures changed, at most once a second."""
        if not self.summary_pending:
            return
        self.summary_pending = False
        close_old_connections()
        cluster = Cluster.objects.with_summary().filter(pk=self.cluster_id).first()
        if cluster is None:
            return
        from clusters.events import cluster_payload

        data = cluster_payload(cluster) | {
            "nodes_ready": cluster.nodes_ready, "nodes_total": cluster.nodes_total, "pods": cluster.pods_total,
            "cpu_requested_m": cluster.cpu_requested_m, "cpu_allocatable_m": cluster.cpu_allocatable_m,
            "memory_requested_bytes": cluster.memory_requested_bytes, "memory_allocatable_bytes": cluster.memory_allocatable_bytes,
        }
        emit("cluster.summary", data, f"cluster-{cluster.pk}", "clusters")


def _fingerprint(cluster):
    creds = cluster.credentials
    return (creds.get("server"), creds.get("token"), creds.get("client_cert"))


class Supervisor:
    """Keeps one ClusterWatch per monitored cluster, following clusters as they come and go."""

    def __init__(self, poll_seconds=5):
        self.poll_seconds = poll_seconds
        self.watches = {}
        self.stop_event = threading.Event()

    def reconcile(self):
        close_old_connections()
        wanted = {c.pk: _fingerprint(c) for c in Cluster.objects.filter(state__in=[ClusterState.ACTIVE, ClusterState.UPDATING, ClusterState.UNAVAILABLE])}
        for cluster_id, watch in list(self.watches.items()):
            if wanted.get(cluster_id) != watch.fingerprint:
                watch.stop()
                del self.watches[cluster_id]
        for cluster_id, fingerprint in wanted.items():
            if cluster_id not in self.watches:
                watch = ClusterWatch(cluster_id, fingerprint)
                watch.start()
                self.watches[cluster_id] = watch

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.reconcile()
            except Exception:
                log.exception("watcher: could not read the clusters to watch")
            self.stop_event.wait(self.poll_seconds)
        for watch in self.watches.values():
            watch.stop()

    def stop(self):
        self.stop_event.set()


__all__ = ["Supervisor", "ClusterWatch", "cluster_changed"]
