"""Reading a cluster's inventory and writing it to the database, efficiently.

Lists are paginated (``limit``/``continue``) and read as raw JSON, never as client model objects;
rows are written with bulk upserts keyed by (cluster, uid), what vanished is deleted, and the whole
cluster is written in one transaction.
"""

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import orjson
from django.db import connection, models, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from clusters.kube.quantity import bytes_, millicores
from clusters.models import ClusterEvent, Namespace, Node, Pod, Service, Workload

log = logging.getLogger(__name__)
PAGE = 2000
FETCH_THREADS = 4
USE_COPY = True  # PostgreSQL: COPY + one upsert; elsewhere (and when False) bulk_create

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
MAX_EVENTS = 500


def list_raw(api, path, **query):
    """All items of a list call, page by page; returns (items, resourceVersion)."""
    items, token, version = [], None, ""
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
        items.extend(body.get("items") or [])
        meta = body.get("metadata") or {}
        token, version = meta.get("continue"), meta.get("resourceVersion", "")
        if not token:
            return items, version


EVENT_QUERY = {"fieldSelector": "type=Warning"}


def fetch(api, versions=None):
    """Everything Corral keeps, as raw dicts keyed by resource name.  ``versions``, when given, is
    filled with each list's resourceVersion (where a watch can start).  The lists are read in
    parallel, so the API server encodes one while Corral decodes another."""
    with ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="corral-list") as pool:
        futures = {name: pool.submit(list_raw, api, path, **(EVENT_QUERY if name == "events" else {}))
                   for name, path in RESOURCES.items()}
        results = {name: future.result() for name, future in futures.items()}
    if versions is not None:
        versions.update({name: version for name, (_, version) in results.items()})
    return {name: items for name, (items, _) in results.items()}


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


def event_fields(obj):
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    last = obj.get("lastTimestamp") or obj.get("eventTime") or (obj.get("metadata") or {}).get("creationTimestamp")
    return {
        **_meta(obj), "type": obj.get("type", ""), "reason": (obj.get("reason") or "")[:128], "message": obj.get("message") or "",
        "involved_kind": involved.get("kind", ""), "involved_name": involved.get("name", ""),
        "count": obj.get("count") or 1, "first_seen": _time(obj.get("firstTimestamp")) or _time(last), "last_seen": _time(last),
    }


def _namespace_of(obj):
    return (obj.get("metadata") or {}).get("namespace", "")


# --- writing ----------------------------------------------------------------------------------


def _upsert(model, cluster, rows, stale=(), unique=("cluster", "uid")):
    """Insert or update ``rows`` (dicts of field values; only those that changed) and delete the
    cluster's rows whose key is in ``stale`` (stored, but no longer reported by the cluster)."""
    now = timezone.now()
    if rows and USE_COPY and connection.vendor == "postgresql":
        _copy_upsert(model, cluster, rows, now, unique)
    elif rows:
        fields = [key for key in rows[0] if key not in unique] + ["synced"]
        model.objects.bulk_create(
            [model(cluster=cluster, synced=now, **row) for row in rows],
            batch_size=1000, update_conflicts=True, unique_fields=list(unique), update_fields=fields,
        )
    if stale:
        gone = model.objects.filter(cluster=cluster, **{f"{unique[-1]}__in": list(stale)})
        if model is Namespace:
            gone = _forget_namespaces(gone)
        gone.delete()


def _json(value):
    # PostgreSQL's jsonb refuses \u0000; a cluster may still send it (event messages, labels).
    return orjson.dumps(value).decode().replace("\\u0000", "")


def _copy_upsert(model, cluster, rows, now, unique):
    """PostgreSQL: COPY the rows into a temporary table, then one INSERT ... ON CONFLICT DO UPDATE.
    Several times faster than parameterised inserts for thousands of rows.  Columns the rows do
    not carry get the model's defaults on insert and are left alone on update."""
    from psycopg.types.json import Jsonb

    given = set(rows[0]) | {"cluster_id", "synced"}
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    defaults = {f.attname: f.get_default() for f in fields if f.attname not in given}
    columns = [f.column for f in fields]
    conflict = [model._meta.get_field(name).column for name in unique]
    table, temp = model._meta.db_table, f"corral_copy_{uuid.uuid4().hex[:12]}"
    quoted = ", ".join(f'"{c}"' for c in columns)
    updates = ", ".join(f'"{f.column}" = EXCLUDED."{f.column}"' for f in fields if f.attname in given and f.column not in conflict)

    def value(field, row):
        v = row.get(field.attname, defaults.get(field.attname)) if field.attname not in ("cluster_id", "synced") else None
        if field.attname == "cluster_id":
            return cluster.pk
        if field.attname == "synced":
            return now
        if isinstance(field, models.JSONField):
            return Jsonb(v, dumps=_json)
        return v.replace("\x00", "") if isinstance(v, str) else v  # text columns cannot hold NUL either

    with connection.cursor() as cursor:
        cursor.execute(f'CREATE TEMPORARY TABLE "{temp}" AS SELECT {quoted} FROM "{table}" WITH NO DATA')
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        with raw.copy(f'COPY "{temp}" ({quoted}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([value(field, row) for field in fields])
        cursor.execute(
            f'INSERT INTO "{table}" ({quoted}) SELECT {quoted} FROM "{temp}" '
            f'ON CONFLICT ({", ".join(conflict)}) DO UPDATE SET {updates}'
        )
        cursor.execute(f'DROP TABLE "{temp}"')


def _forget_namespaces(stale):
    """Namespaces gone from the cluster: those in a project are Corral's to keep (the reconciler
    makes them again), so they only lose their uid; the rest are deleted."""
    stale = stale.exclude(uid="")  # asked for by Corral, not made in the cluster yet
    stale.filter(project__isnull=False).update(uid="", phase="", resource_version="")
    return stale.filter(project__isnull=True)


def _stored(model, cluster, key="uid", *extra):
    """What the database holds: key -> (resourceVersion, *extra) for the cluster's rows."""
    return {row[0]: row[1:] for row in model.objects.filter(cluster=cluster).values_list(key, "resource_version", *extra)}


def _version(obj):
    return (obj.get("metadata") or {}).get("resourceVersion", "")


def _uid(obj):
    return (obj.get("metadata") or {}).get("uid", "")


def write(cluster, data):
    """Write everything ``fetch`` returned, in one transaction; objects whose resourceVersion (and
    links) did not change since the last sync are not written again.  Returns object counts."""
    with transaction.atomic():
        stored = _stored(Namespace, cluster, "name", "uid")
        names = {o["metadata"]["name"] for o in data["namespaces"]}
        changed = [o for o in data["namespaces"] if stored.get(o["metadata"]["name"]) != (_version(o), _uid(o))]
        _upsert(Namespace, cluster, [namespace_fields(o) for o in changed], set(stored) - names, unique=("cluster", "name"))
        ns_ids = dict(Namespace.objects.filter(cluster=cluster).values_list("name", "id"))

        stored = _stored(Node, cluster)
        changed = [o for o in data["nodes"] if stored.get(_uid(o)) != (_version(o),)]
        _upsert(Node, cluster, [node_fields(o) for o in changed], set(stored) - {_uid(o) for o in data["nodes"]})
        node_ids = dict(Node.objects.filter(cluster=cluster).values_list("name", "id"))

        stored = _stored(Workload, cluster, "uid", "namespace_id")
        workloads, seen = [], set()
        for resource, kind in WORKLOAD_KINDS.items():
            for obj in data[resource]:
                ns = ns_ids.get(_namespace_of(obj))
                if ns is None:
                    continue
                seen.add(_uid(obj))
                if stored.get(_uid(obj)) != (_version(obj), ns):
                    workloads.append({**workload_fields(obj, kind), "namespace_id": ns})
        _upsert(Workload, cluster, workloads, set(stored) - seen)
        workload_count = len(seen)
        workload_ids = {(k, ns, n): i for i, k, ns, n in Workload.objects.filter(cluster=cluster).values_list("id", "kind", "namespace_id", "name")}

        # Pods are owned by ReplicaSets, which Deployments own: link pods to the Deployment.
        rs_owner = {}
        for rs in data["replicasets"]:
            owners = (rs.get("metadata") or {}).get("ownerReferences") or []
            owner = next((o for o in owners if o.get("controller")), None)
            if owner and owner.get("kind") == "Deployment":
                rs_owner[(_namespace_of(rs), rs["metadata"]["name"])] = owner["name"]
        stored = _stored(Pod, cluster, "uid", "namespace_id", "node_id", "workload_id")
        pods, seen = [], set()
        for obj in data["pods"]:
            ns = ns_ids.get(_namespace_of(obj))
            if ns is None:
                continue
            owners = (obj.get("metadata") or {}).get("ownerReferences") or []
            owner = next((o for o in owners if o.get("controller")), owners[0] if owners else {})
            kind, name = owner.get("kind", ""), owner.get("name", "")
            if kind == "ReplicaSet" and (_namespace_of(obj), name) in rs_owner:
                kind, name = "Deployment", rs_owner[(_namespace_of(obj), name)]
            workload_id = workload_ids.get((OWNER_KIND.get(kind), ns, name))
            node_id = node_ids.get((obj.get("spec") or {}).get("nodeName"))
            seen.add(_uid(obj))
            if stored.get(_uid(obj)) == (_version(obj), ns, node_id, workload_id):
                continue
            pods.append({**pod_fields(obj), "workload_id": workload_id, "node_id": node_id, "namespace_id": ns})
        _upsert(Pod, cluster, pods, set(stored) - seen)
        pod_count = len(seen)

        stored = _stored(Service, cluster)
        services, seen = [], set()
        for obj in data["services"]:
            ns = ns_ids.get(_namespace_of(obj))
            if ns is not None:
                seen.add(_uid(obj))
                if stored.get(_uid(obj)) != (_version(obj),):
                    services.append({**service_fields(obj), "namespace_id": ns})
        _upsert(Service, cluster, services, set(stored) - seen)
        service_count = len(seen)

        recent = sorted(data["events"], key=lambda o: o.get("lastTimestamp") or o.get("eventTime") or "", reverse=True)[:MAX_EVENTS]
        stored = _stored(ClusterEvent, cluster)
        events = [event_fields(o) | {"namespace_id": ns_ids.get(_namespace_of(o))} for o in recent if stored.get(_uid(o)) != (_version(o),)]
        _upsert(ClusterEvent, cluster, events, set(stored) - {_uid(o) for o in recent})
    return {
        "namespaces": len(data["namespaces"]), "nodes": len(data["nodes"]), "workloads": workload_count,
        "pods": pod_count, "services": service_count, "events": len(recent),
    }


# --- single changes (from watches) ------------------------------------------------------------

MODELS = {"namespaces": Namespace, "nodes": Node, "pods": Pod, "services": Service, "events": ClusterEvent,
          **{resource: Workload for resource in WORKLOAD_KINDS}}


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


def apply_change(cluster, resource, kind, obj):
    """Apply one watch event (ADDED, MODIFIED, DELETED); returns (model instance or None, deleted uid or None)."""
    model = MODELS[resource]
    uid = (obj.get("metadata") or {}).get("uid", "")
    if kind == "DELETED":
        if resource == "namespaces":
            _forget_namespaces(model.objects.filter(cluster=cluster, name=obj["metadata"]["name"])).delete()
        else:
            model.objects.filter(cluster=cluster, uid=uid).delete()
        return None, uid
    row = row_for(cluster, resource, obj)
    if row is None:
        return None, None
    lookup = {"name": row.pop("name")} if resource == "namespaces" else {"uid": row.pop("uid")}
    if resource == "namespaces":
        row["uid"] = uid
    instance, _ = model.objects.update_or_create(cluster=cluster, **lookup, defaults={**row, "synced": timezone.now()})
    return instance, None
