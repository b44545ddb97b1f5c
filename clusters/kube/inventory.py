"""Reading a cluster's inventory and writing it to the database, efficiently and in bounded memory.

Lists are paginated (``limit``/``continue``) and read as raw JSON, never as client model objects,
one page ahead of the writes; each page is written as it arrives (bulk upserts keyed by (cluster,
uid), only what changed), so a sync holds one or two pages, never a whole cluster.  After each list,
the rows it proves gone are deleted.  Writes go through ``clusters.kube.store``: they never undo a
newer write, whichever process made it (the watcher, a resync).
"""

import hashlib
import heapq
import itertools
import logging
import queue
import re
import threading
from datetime import datetime, timedelta

import orjson
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from clusters.kube import store
from clusters.kube.quantity import bytes_, millicores
from clusters.models import ClusterEvent, Namespace, Node, Pod, Service, Workload

log = logging.getLogger(__name__)
PAGE = 500  # objects per list call: a sync holds at most two pages of one resource at a time

RESOURCES = {
    "namespaces": "/api/v1/namespaces",
    "nodes": "/api/v1/nodes",
    "pods": "/api/v1/pods",
    "services": "/api/v1/services",
    "events": "/api/v1/events",
    "deployments": "/apis/apps/v1/deployments",
    "statefulsets": "/apis/apps/v1/statefulsets",
    "daemonsets": "/apis/apps/v1/daemonsets",
    "replicasets": "/apis/apps/v1/replicasets",
    "jobs": "/apis/batch/v1/jobs",
    "cronjobs": "/apis/batch/v1/cronjobs",
}
WORKLOAD_KINDS = {"deployments": "deployment", "statefulsets": "statefulset", "daemonsets": "daemonset", "jobs": "job", "cronjobs": "cronjob"}
OWNER_KIND = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset", "Job": "job", "CronJob": "cronjob"}
# Events, Warning and Normal: the most recent MAX_EVENTS per cluster seen within EVENT_WINDOW (the
# API server's own event TTL is an hour).  Kubernetes deduplicates a repeated event into one object
# whose count grows; Corral keeps that one row (by uid) and its count.
MAX_EVENTS = 500
EVENT_WINDOW = timedelta(hours=1)
# Written in this order, so that what a row links to (namespace, node, workload) is there first.
SYNC_ORDER = ["namespaces", "nodes", *WORKLOAD_KINDS, "replicasets", "pods", "services", "events"]


def ensure_uid(path, obj):
    """An object without a uid (CAPI's in-memory API servers give none) gets a stable one made of
    where it is listed and its name, so that Corral's rows, keyed by uid, stay one per object."""
    meta = obj.setdefault("metadata", {}) if isinstance(obj, dict) else {}
    if isinstance(meta, dict) and not meta.get("uid"):
        key = f"{path}/{meta.get('namespace', '')}/{meta.get('name', '')}"
        meta["uid"] = "corral-" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return obj


def pages_raw(api, path, **query):
    """The pages of a list call, one by one: (items, resourceVersion of the list)."""
    token = None
    while True:
        params = [("limit", PAGE), *query.items()]
        if token:
            params.append(("continue", token))
        response = api.call_api(
            path, "GET", query_params=params, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
            _request_timeout=api.corral_timeout * 3,
        )
        body = orjson.loads(response.data)
        meta = body.get("metadata") or {}
        token = meta.get("continue")
        yield [ensure_uid(path, item) for item in body.get("items") or []], meta.get("resourceVersion", "")
        if not token:
            return


def list_raw(api, path, **query):
    """All items of a list call; returns (items, resourceVersion).  For small lists only."""
    items, version = [], ""
    for page, page_version in pages_raw(api, path, **query):
        items.extend(page)
        version = page_version
    return items, version


_END = object()


def read_ahead(pages, depth=1):
    """Iterate ``pages`` with a thread reading up to ``depth`` pages ahead: the API server encodes
    the next page while Corral writes this one, and no more than that waits in memory."""
    ahead, stop = queue.Queue(maxsize=depth), threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def read():
        try:
            for page in pages:
                put(page)
                if stop.is_set():
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
            put(exc)

    threading.Thread(target=read, name="corral-list", daemon=True).start()
    try:
        while (item := ahead.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# --- transforms -------------------------------------------------------------------------------


def _time(value):
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)  # RFC 3339 from the API server; 3.11 reads the "Z"
    except ValueError:
        return parse_datetime(value)


def _meta(obj):
    meta = obj.get("metadata") or {}
    return {
        "uid": meta.get("uid", ""), "name": meta.get("name", ""), "labels": meta.get("labels") or {},
        "resource_version": meta.get("resourceVersion", ""), "created_in_cluster": _time(meta.get("creationTimestamp")),
    }


def node_fields(obj):
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    labels = (obj.get("metadata") or {}).get("labels") or {}
    conditions = status.get("conditions") or []
    allocatable = status.get("allocatable") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and "/" in k) or ["worker"]
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    return {
        **_meta(obj),
        "roles": roles,
        "kubelet_version": (status.get("nodeInfo") or {}).get("kubeletVersion", ""),
        "os_image": (status.get("nodeInfo") or {}).get("osImage", ""),
        "internal_ip": addresses.get("InternalIP", "") or "",
        "capacity": status.get("capacity") or {},
        "allocatable": allocatable,
        "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")} for c in conditions],
        "taints": spec.get("taints") or [],
        "ready": any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        "unschedulable": bool(spec.get("unschedulable")),
        "cpu_allocatable_m": millicores(allocatable.get("cpu", 0)),
        "memory_allocatable_bytes": bytes_(allocatable.get("memory", 0)),
        "pods_allocatable": int(bytes_(allocatable.get("pods", 0))),
    }


def namespace_fields(obj):
    return {**_meta(obj), "phase": (obj.get("status") or {}).get("phase", "")}


def _containers(spec):
    return spec.get("containers") or []


def workload_fields(obj, kind):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "cronjob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        desired, ready, available = 0, len(status.get("active") or []), 0
    else:
        template = spec.get("template") or {}
        if kind == "daemonset":
            desired, ready, available = status.get("desiredNumberScheduled", 0), status.get("numberReady", 0), status.get("numberAvailable", 0)
        elif kind == "job":
            desired, ready, available = spec.get("completions") or spec.get("parallelism") or 1, status.get("ready", 0) or 0, status.get("succeeded", 0) or 0
        else:
            desired, ready, available = spec.get("replicas", 1), status.get("readyReplicas", 0), status.get("availableReplicas", 0)
    pod_spec = template.get("spec") or {}
    return {
        **_meta(obj), "kind": kind,
        "desired_replicas": desired or 0, "ready_replicas": ready or 0, "available_replicas": available or 0,
        "images": sorted({c.get("image", "") for c in _containers(pod_spec)}),
        "selector": (spec.get("selector") or {}).get("matchLabels") or {},
        "paused": bool(spec.get("paused") or spec.get("suspend")),
    }


def pod_fields(obj):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else {})
    cpu = mem = 0
    for container in _containers(spec):
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += millicores(requests.get("cpu", 0))
        mem += bytes_(requests.get("memory", 0))
    conditions = status.get("conditions") or []
    return {
        **_meta(obj),
        "node_name": spec.get("nodeName", "") or "",
        "owner_kind": owner.get("kind", ""), "owner_name": owner.get("name", ""),
        "phase": status.get("phase", ""),
        "ready": any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        "restarts": sum(s.get("restartCount", 0) for s in statuses),
        "waiting_reason": next((str(w.get("reason") or "")[:64] for s in (status.get("initContainerStatuses") or []) + statuses
                                if (w := (s.get("state") or {}).get("waiting")) and w.get("reason")), ""),
        "images": [c.get("image", "") for c in _containers(spec)],
        "pod_ip": status.get("podIP", "") or "",
        "cpu_request_m": cpu, "memory_request_bytes": mem,
        "started": _time(status.get("startTime")),
    }


def service_fields(obj):
    spec = obj.get("spec") or {}
    return {
        **_meta(obj), "type": spec.get("type", ""), "cluster_ip": spec.get("clusterIP", "") or "",
        "ports": [{k: p.get(k) for k in ("name", "port", "targetPort", "protocol", "nodePort") if p.get(k) is not None} for p in spec.get("ports") or []],
        "selector": spec.get("selector") or {},
    }


def event_last_seen(obj):
    """When an event last happened (RFC 3339 text), whichever way its reporter said it."""
    return (obj.get("lastTimestamp") or (obj.get("series") or {}).get("lastObservedTime") or obj.get("eventTime")
            or (obj.get("metadata") or {}).get("creationTimestamp") or "")


def event_is_recent(obj, now=None):
    """Within the window Corral keeps events for (an event without any time counts as recent)."""
    last = _time(event_last_seen(obj))
    return last is None or last >= (now or timezone.now()) - EVENT_WINDOW


def event_fields(obj):
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    last = event_last_seen(obj)
    series = obj.get("series") or {}
    return {
        **_meta(obj), "type": obj.get("type", ""), "reason": (obj.get("reason") or "")[:128], "message": obj.get("message") or "",
        "involved_kind": involved.get("kind", ""), "involved_name": involved.get("name", ""),
        "count": obj.get("count") or series.get("count") or 1, "first_seen": _time(obj.get("firstTimestamp")) or _time(last), "last_seen": _time(last),
    }


def _namespace_of(obj):
    return (obj.get("metadata") or {}).get("namespace", "")


# --- writing a sync, page by page -------------------------------------------------------------

MODELS = {"namespaces": Namespace, "nodes": Node, "pods": Pod, "services": Service, "events": ClusterEvent,
          **{resource: Workload for resource in WORKLOAD_KINDS}}
# What a row links to besides its own fields: a row is rewritten when these change, too.
LINKS = {"namespaces": ("uid",), "nodes": (), "pods": ("namespace_id", "node_id", "workload_id"), "services": ("namespace_id",),
         **{resource: ("namespace_id",) for resource in WORKLOAD_KINDS}}


def _version(obj):
    return (obj.get("metadata") or {}).get("resourceVersion", "")


def _uid(obj):
    return (obj.get("metadata") or {}).get("uid", "")


def _key(resource, obj):
    meta = obj.get("metadata") or {}
    return meta.get("name", "") if resource == "namespaces" else meta.get("uid", "")


def _direct(work):
    return work()


class SyncWriter:
    """Writes one cluster's lists as they are read, a page per transaction under the cluster's
    inventory lock.  ``apply`` runs each piece of database work: directly (a Celery resync), or on
    the cluster's writer thread, in order with its watch events (the watcher)."""

    def __init__(self, cluster, apply=None):
        self.cluster = cluster
        self.apply = apply or _direct
        self.started = timezone.now()
        self.warnings = []
        self.counts = dict.fromkeys(("namespaces", "nodes", "workloads", "pods", "services", "events"), 0)
        self.rs_owner = {}  # (namespace, ReplicaSet) -> Deployment, to link pods to Deployments
        self.recent_events = []  # a heap of the most recent events, at most MAX_EVENTS
        self._order = itertools.count()
        self.ns_ids, self.node_ids, self.workload_ids = {}, {}, {}
        self.stored = {}  # resource -> what the database held when its list began (see _snapshot)
        self.listed = set()  # resources whose lists are complete

    def page(self, resource, items):
        if resource == "replicasets":
            for rs in items:
                owners = (rs.get("metadata") or {}).get("ownerReferences") or []
                owner = next((o for o in owners if o.get("controller")), None)
                if owner and owner.get("kind") == "Deployment":
                    self.rs_owner[(_namespace_of(rs), rs["metadata"].get("name"))] = owner.get("name")
        elif resource == "events":
            now = timezone.now()
            for obj in items:
                if not event_is_recent(obj, now):
                    continue
                entry = (event_last_seen(obj), _uid(obj), next(self._order), obj)
                if len(self.recent_events) < MAX_EVENTS:
                    heapq.heappush(self.recent_events, entry)
                elif entry[:2] > self.recent_events[0][:2]:
                    heapq.heapreplace(self.recent_events, entry)
        else:
            self.apply(lambda: self._write_page(resource, items))

    def end(self, resource, listed, version):
        """A list is complete: delete what it proves gone."""
        if resource == "replicasets":
            return
        if resource == "events":
            self.apply(lambda: self._write_events(version))
            return
        counted = "workloads" if resource in WORKLOAD_KINDS else resource
        self.counts[counted] += len(listed)
        self.apply(lambda: self._delete_unlisted(resource, listed, version))

    def events_relisted(self, version):
        """The events alone were listed again (their watch expired: 410): write them as a sync
        does, and what could not be stored as warnings, in one piece of work.  Events alone can be
        listed again: their rows link to nothing but a namespace, while a pod's link to the nodes
        and workloads a whole sync lists."""
        def write():
            self._write_events(version)
            if self.warnings:
                store.record_warnings(self.cluster.pk, self.warnings)
                self.warnings = []
        self.apply(write)

    def unserved(self, resource):
        """The server does not serve ``resource``: its rows go, unburied (the objects may well be
        in the cluster's store, and come back when the API is served again)."""
        if resource in MODELS and resource != "namespaces":
            scope = {"kind": WORKLOAD_KINDS[resource]} if resource in WORKLOAD_KINDS else {}

            def forget():
                with transaction.atomic():
                    store.lock_inventory(self.cluster.pk)
                    MODELS[resource].objects.filter(cluster=self.cluster, **scope).delete()
            self.apply(forget)

    def finish(self):
        def wrap_up():
            store.forget_old_tombstones(self.cluster)
            store.record_warnings(self.cluster.pk, self.warnings, replace=True)
        self.apply(wrap_up)
        return self.counts

    # --- on the writing side ---

    def _warn(self, resource, obj, why):
        meta = obj.get("metadata") or {}
        warning = {"resource": resource, "namespace": str(meta.get("namespace", "")), "name": str(meta.get("name", "")),
                   "uid": str(meta.get("uid", "")), "error": why[:500]}
        log.warning("cluster %s: %s %s/%s not stored: %s", self.cluster.pk, resource, warning["namespace"], warning["name"], why)
        self.warnings.append(store.clean(warning))

    def _namespace_id(self, name):
        if name and name not in self.ns_ids:  # made since the namespaces were listed (a watch event)
            self.ns_ids[name] = Namespace.objects.filter(cluster=self.cluster, name=name).values_list("id", flat=True).first()
        return self.ns_ids.get(name)

    def _links(self, resource, obj):
        """Foreign keys of an object's row, or None when it cannot be placed (unknown namespace)."""
        if resource == "namespaces":
            return {"uid": _uid(obj)}
        if resource == "nodes":
            return {}
        ns = self._namespace_id(_namespace_of(obj))
        if ns is None:
            return None
        if resource != "pods":
            return {"namespace_id": ns}
        owners = (obj.get("metadata") or {}).get("ownerReferences") or []
        owner = next((o for o in owners if o.get("controller")), owners[0] if owners else {})
        kind, name = owner.get("kind", ""), owner.get("name", "")
        if kind == "ReplicaSet":
            deployment = self.rs_owner.get((_namespace_of(obj), name)) or _deployment_of_replicaset(obj, name)
            if deployment:
                kind, name = "Deployment", deployment
        return {"namespace_id": ns, "node_id": self.node_ids.get((obj.get("spec") or {}).get("nodeName")),
                "workload_id": self.workload_ids.get((OWNER_KIND.get(kind), ns, name))}

    def _snapshot(self, resource):
        """What the database holds of ``resource`` for the cluster, read in one query when its list
        begins: key -> (resourceVersion, *links, id, *extra).  It only decides what to skip (a row
        already at the listed version needs nothing, whoever wrote it) and whether the list left
        anything out; what differs is written, and what is gone deleted, under the lock, guarded."""
        if resource in WORKLOAD_KINDS and resource not in self.stored:
            # One query for every workload kind not listed yet (one table); each kind's rows apart.
            kinds = {kind: name for name, kind in WORKLOAD_KINDS.items() if name not in self.stored and name not in self.listed}
            for name in kinds.values():
                self.stored[name] = {}
            rows = Workload.objects.filter(cluster=self.cluster, kind__in=list(kinds)).order_by()
            for row in rows.values_list("uid", "resource_version", *LINKS[resource], "id", "kind", "namespace_id", "name"):
                self.stored[kinds[row[-3]]][row[0]] = row[1:]
        elif resource not in self.stored:
            key = "name" if resource == "namespaces" else "uid"
            rows = MODELS[resource].objects.filter(cluster=self.cluster).order_by()
            self.stored[resource] = {row[0]: row[1:] for row in rows.values_list(key, "resource_version", *LINKS[resource], "id", "name")}
        return self.stored[resource]

    def _delete_unlisted(self, resource, listed, version):
        self.listed.add(resource)
        snapshot = self.stored.pop(resource, None)
        if snapshot is not None and snapshot.keys() <= listed:
            return  # every row there was when the list began is in it (rows written since are newer)
        scope = {"kind": WORKLOAD_KINDS[resource]} if resource in WORKLOAD_KINDS else {}
        key = "name" if resource == "namespaces" else "uid"
        store.delete_unlisted(MODELS[resource], self.cluster, listed, version, self.started, key, **scope)

    def _write_page(self, resource, items):
        """Write what of a page differs from the rows stored (compared with the list's snapshot)."""
        model, links = MODELS[resource], LINKS[resource]
        key = "name" if resource == "namespaces" else "uid"
        extra = ("kind", "namespace_id", "name") if resource in WORKLOAD_KINDS else ("name",)
        snapshot = self._snapshot(resource)
        width = 1 + len(links)
        found = [(k, snapshot[k]) for k in (_key(resource, o) for o in items) if k in snapshot]
        self._remember_ids(resource, [row[width:] for _, row in found])
        stored = {k: row[:width] for k, row in found}
        rows = []
        for obj in items:
            try:
                placed = self._links(resource, obj)
                if placed is None or stored.get(_key(resource, obj)) == (_version(obj), *(placed[name] for name in links)):
                    continue  # unplaceable, or unchanged since it was written
                rows.append({**FIELDS[resource](obj), **placed})
            except Exception as exc:  # noqa: BLE001 - one odd object must not stop the sync
                self._warn(resource, obj, f"cannot be read: {exc!r}")
        if not rows:
            return
        unique = ("cluster", "name") if resource == "namespaces" else ("cluster", "uid")
        with transaction.atomic():
            store.lock_inventory(self.cluster.pk)
            failed = store.upsert(model, self.cluster, rows, unique)
            if failed:
                by_key = {_key(resource, o): o for o in items}
                for row, why in failed:
                    self._warn(resource, by_key.get(row[unique[-1]], {}), why)
        if resource in ("namespaces", "nodes") or resource in WORKLOAD_KINDS:
            written = [row[key] for row in rows]
            self._remember_ids(resource, model.objects.filter(cluster=self.cluster, **{f"{key}__in": written}).order_by()
                               .values_list("id", *extra))

    def _remember_ids(self, resource, found):
        """Ids of rows that later rows link to: ``(id, name)``, or ``(id, kind, namespace, name)``."""
        if resource == "namespaces":
            self.ns_ids.update((name, pk) for pk, name in found)
        elif resource == "nodes":
            self.node_ids.update((name, pk) for pk, name in found)
        elif resource in WORKLOAD_KINDS:
            self.workload_ids.update(((k, ns, n), pk) for pk, k, ns, n in found)

    def _write_events(self, list_version=""):
        # (Kept until written: the writer runs this again when the database was away.)
        recent = sorted(self.recent_events, key=lambda e: e[:3], reverse=True)
        self.counts["events"] = len(recent)
        rows, keep = [], set()
        with transaction.atomic():
            store.lock_inventory(self.cluster.pk)
            # Every stored event in one query (at most MAX_EVENTS and what the watcher added since).
            stored = {uid: (pk, version, synced) for pk, uid, version, synced in
                      ClusterEvent.objects.filter(cluster=self.cluster).order_by().values_list("pk", "uid", "resource_version", "synced")}
            for _, uid, _, obj in recent:
                keep.add(uid)
                if stored.get(uid, (None, None))[1] != _version(obj):
                    try:
                        rows.append(event_fields(obj) | {"namespace_id": self._namespace_id(_namespace_of(obj))})
                    except Exception as exc:  # noqa: BLE001
                        self._warn("events", obj, f"cannot be read: {exc!r}")
            by_uid = {uid: obj for _, uid, _, obj in recent}
            for row, why in store.upsert(ClusterEvent, self.cluster, rows):
                self._warn("events", by_uid.get(row["uid"], {}), why)
            # Only the most recent events are kept; a row the list does not keep goes unless it is
            # newer than the list (a watch event written meanwhile).
            gone = [pk for uid, (pk, version, synced) in stored.items()
                    if uid not in keep and store.proven_gone(version, synced, list_version, self.started)]
            if gone:
                ClusterEvent.objects.filter(pk__in=gone).delete()
        self.recent_events = []


FIELDS = {"namespaces": namespace_fields, "nodes": node_fields, "pods": pod_fields, "services": service_fields,
          **{resource: (lambda obj, kind=kind: workload_fields(obj, kind)) for resource, kind in WORKLOAD_KINDS.items()}}


def _lists(api, served, unserved):
    """Every list of a sync in SYNC_ORDER, as steps: ("page", resource, items, version) for each
    page, ("end", resource, None, version) when its list is complete, ("unserved", resource, None,
    None) for a resource the server does not serve."""
    for resource in SYNC_ORDER:
        if resource not in served:
            if resource in unserved:
                yield "unserved", resource, None, None
            continue
        version = ""
        for items, version in pages_raw(api, RESOURCES[resource]):  # every page is read at one resourceVersion
            yield "page", resource, items, version
        yield "end", resource, None, version


def sync_inventory(cluster, api, versions=None, apply=None, missing=None):
    """Read the cluster's whole inventory and write it as it comes; returns object counts.
    ``versions``, when given, receives each list's resourceVersion (where a watch can start).
    Only what the server serves is listed (clusters.kube.discovery); ``missing``, when given (a
    list), receives what is not.  A resource the server does not serve has no objects (its rows
    go); one whose discovery failed (a 5xx) keeps its rows until the server answers again."""
    from clusters.kube.discovery import discover, unavailable_api_services

    served, absent = discover(api, RESOURCES)
    unserved = {name for m in absent if m["served"] is False for name in m["resources"]}
    if missing is not None:
        missing.extend(absent + unavailable_api_services(api))
    writer = SyncWriter(cluster, apply)
    listed = set()
    # One thread reads every list, one page ahead of the writes: the next list is on its way while
    # this one is written, over the same connection.
    for step, resource, items, version in read_ahead(_lists(api, served, unserved)):
        if step == "unserved":
            writer.unserved(resource)
        elif step == "page":
            listed.update(_key(resource, o) for o in items)
            writer.page(resource, items)
        else:
            writer.end(resource, listed, version)
            listed = set()
            if versions is not None:
                versions[resource] = version
    return writer.finish()


def write(cluster, data):
    """Write lists already read (``data``: resource name -> items) the way a sync does."""
    writer = SyncWriter(cluster)
    for resource in SYNC_ORDER:
        items = data.get(resource) or []
        writer.page(resource, items)
        writer.end(resource, {_key(resource, o) for o in items}, "")
    return writer.finish()


# --- single changes (from watches) ------------------------------------------------------------

def _deployment_of_replicaset(pod, rs_name):
    """A ReplicaSet made by a Deployment is named <deployment>-<pod-template-hash>."""
    suffix = ((pod.get("metadata") or {}).get("labels") or {}).get("pod-template-hash")
    if suffix and rs_name.endswith("-" + suffix):
        return rs_name[: -len(suffix) - 1]
    return None


def row_for(cluster, resource, obj):
    """Field values for one object, with foreign keys resolved; None when it cannot be placed
    (its namespace is not known yet)."""
    if resource == "namespaces":
        return namespace_fields(obj)
    if resource == "nodes":
        return node_fields(obj)
    ns_name = _namespace_of(obj)
    ns_id = Namespace.objects.filter(cluster=cluster, name=ns_name).values_list("id", flat=True).first() if ns_name else None
    if resource == "events":
        return {**event_fields(obj), "namespace_id": ns_id}
    if ns_id is None:
        return None
    if resource in WORKLOAD_KINDS:
        return {**workload_fields(obj, WORKLOAD_KINDS[resource]), "namespace_id": ns_id}
    if resource == "services":
        return {**service_fields(obj), "namespace_id": ns_id}
    row = pod_fields(obj)
    kind, name = row["owner_kind"], row["owner_name"]
    if kind == "ReplicaSet":
        deployment = _deployment_of_replicaset(obj, name)
        if deployment:
            kind, name = "Deployment", deployment
    row["workload_id"] = Workload.objects.filter(
        cluster=cluster, namespace_id=ns_id, kind=OWNER_KIND.get(kind, ""), name=name
    ).values_list("id", flat=True).first()
    row["node_id"] = Node.objects.filter(cluster=cluster, name=row["node_name"]).values_list("id", flat=True).first() if row["node_name"] else None
    row["namespace_id"] = ns_id
    return row


def adopt_pods(cluster, workload):
    """Link the workload's pods that were written before it (watch threads of different kinds race:
    a pod may arrive before its Deployment) and so were stored with no workload."""
    orphans = Pod.objects.filter(cluster=cluster, namespace_id=workload.namespace_id, workload__isnull=True)
    if workload.kind == "deployment":  # through its ReplicaSets, named <deployment>-<pod-template-hash>
        orphans = orphans.filter(owner_kind="ReplicaSet", owner_name__regex=rf"^{re.escape(workload.name)}-[a-z0-9]+$")
    else:
        owner = next((k for k, v in OWNER_KIND.items() if v == workload.kind), None)
        orphans = orphans.filter(owner_kind=owner, owner_name=workload.name)
    return orphans.update(workload=workload)


def apply_change(cluster, resource, kind, obj):
    """Apply one watch event (ADDED, MODIFIED, DELETED) unless the database holds a newer version
    or the object was deleted; returns (model instance or None, deleted uid or None)."""
    model = MODELS[resource]
    meta = ensure_uid(RESOURCES[resource], obj).get("metadata") or {}
    uid = meta.get("uid", "")
    with transaction.atomic():
        store.lock_inventory(cluster.pk)
        if kind == "DELETED":
            if resource == "namespaces":
                store.forget_namespaces(model.objects.filter(cluster=cluster, name=meta.get("name", ""))).delete()
            else:
                model.objects.filter(cluster=cluster, uid=uid).delete()
            store.bury(cluster, [uid])
            return None, uid
        try:
            row = row_for(cluster, resource, obj)
        except Exception as exc:  # noqa: BLE001 - one odd object must not stop the others
            return _not_stored(cluster, resource, obj, f"cannot be read: {exc!r}")
        if row is None:
            return None, None
        row = store.clean(row)
        lookup = {"name": row.pop("name")} if resource == "namespaces" else {"uid": row.pop("uid")}
        if resource == "namespaces":
            row["uid"] = uid
        instance = model.objects.select_for_update().filter(cluster=cluster, **lookup).first()
        if instance is None and store.tombstoned(cluster, [uid]):
            return None, None  # deleted already: an event from before the deletion
        if instance is not None and store.rv_older(row.get("resource_version"), instance.resource_version):
            return None, None  # older than what a resync already wrote
        try:
            with transaction.atomic():
                if instance is None:
                    instance = model.objects.create(cluster=cluster, **lookup, **row, synced=timezone.now())
                else:
                    for name, value in row.items():
                        setattr(instance, name, value)
                    instance.synced = timezone.now()
                    instance.save()
                if resource in WORKLOAD_KINDS:
                    adopt_pods(cluster, instance)
        except DatabaseError as exc:
            return _not_stored(cluster, resource, obj, str(exc).splitlines()[0])
    return instance, None


def _not_stored(cluster, resource, obj, why):
    meta = obj.get("metadata") or {}
    log.warning("cluster %s: %s %s/%s not stored: %s", cluster.pk, resource, meta.get("namespace", ""), meta.get("name", ""), why)
    store.record_warnings(cluster.pk, [store.clean({"resource": resource, "namespace": str(meta.get("namespace", "")),
                                                    "name": str(meta.get("name", "")), "uid": str(meta.get("uid", "")), "error": why[:500]})])
    return None, None
