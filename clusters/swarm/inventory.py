"""A Swarm's inventory: read from the manager's Engine API, mapped onto Corral's inventory rows
(nodes -> Node, stacks -> Namespace, services -> Workload kind "service", tasks -> Pod, networks,
secrets and configs -> SwarmObject, metadata only) and written the way Kubernetes inventory is:
under the cluster's inventory lock, only what changed, deleting only what a list proves gone, and
each change announced on the cluster's websocket topic to those who may see the row.

A stack is the ``com.docker.stack.namespace`` label; what is in no stack is in the stack "default".
Swarm objects carry a raft index (``Version.Index``) that grows with every change: it is the rows'
resource_version, so the store's "never older over newer" rule holds for Swarm too.
"""

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from docker.utils import version_lt

from clusters.kube import store
from clusters.models import Cluster, Namespace, Node, Pod, SwarmObject, Workload, WorkloadKind
from clusters.signals import inventory_changed
from portal.events import batched, emit, group_name

log = logging.getLogger(__name__)

STACK_LABEL = "com.docker.stack.namespace"
DEFAULT_STACK = "default"
# Docker's task states -> the pod phases Corral's pages, counts and alerts know.
PHASES = {
    "running": "Running", "complete": "Succeeded", "failed": "Failed", "rejected": "Failed",
    "shutdown": "Succeeded", "remove": "Succeeded", "orphaned": "Failed",
}


def _time(value):
    if not value:
        return None
    value = str(value)
    # Docker gives nanoseconds (2026-11-23T04:21:37.123456789Z): Python reads microseconds.
    if "." in value:
        head, tail = value.split(".", 1)
        digits = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(digits):]
        value = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = parse_datetime(value)
    if parsed is not None and parsed.year < 1971:
        return None  # Docker's zero time
    return parsed


def _version(obj):
    index = (obj.get("Version") or {}).get("Index")
    return str(index) if index is not None else ""


def _stack(labels):
    return (labels or {}).get(STACK_LABEL) or DEFAULT_STACK


def _image(reference):
    """The image as people wrote it: without the digest Swarm pins (nginx:1.27@sha256:... -> nginx:1.27)."""
    return (reference or "").split("@", 1)[0]


# --- reading ----------------------------------------------------------------------------------


def read(client, objects=True, services=None, nodes=True):
    """Everything Corral keeps of the swarm, as the Engine API gives it (dicts); ``objects``: with
    the networks, secrets and configs; ``services``: only these services (ids) and their tasks;
    ``nodes``: with the nodes.  ``started``: when the reading began (a row written after it is
    newer than the read and is not deleted for missing from it)."""
    api = client.api
    data = {"started": timezone.now()}
    if nodes:
        data["nodes"] = api.nodes()
    # Running/desired task counts come with the services from API 1.41 (Docker 20.10); before, from the tasks.
    with_status = {"status": True} if not version_lt(api._version, "1.41") else {}
    if services is None:
        data["services"] = api.services(**with_status)
        data["tasks"] = api.tasks()
    elif services:
        ids = sorted(services)
        data["service_ids"] = ids
        # The id filter matches prefixes: a full id only itself.
        data["services"] = [s for s in api.services(filters={"id": ids}, **with_status) if s.get("ID") in services]
        data["tasks"] = [t for t in api.tasks(filters={"service": ids}) if t.get("ServiceID") in services]
    else:
        data["service_ids"], data["services"], data["tasks"] = [], [], []
    if objects:
        data["networks"] = [n for n in api.networks() if n.get("Scope") == "swarm"]
        data["secrets"] = api.secrets()
        data["configs"] = api.configs()
    return data


# --- mapping ----------------------------------------------------------------------------------


def node_fields(node):
    spec, desc, status = node.get("Spec") or {}, node.get("Description") or {}, node.get("Status") or {}
    resources, manager = desc.get("Resources") or {}, node.get("ManagerStatus") or {}
    cpu_m = int(resources.get("NanoCPUs") or 0) // 1_000_000
    memory = int(resources.get("MemoryBytes") or 0)
    quantities = {"cpu": f"{cpu_m}m", "memory": str(memory)}
    platform, engine = desc.get("Platform") or {}, desc.get("Engine") or {}
    state, availability = status.get("State", ""), spec.get("Availability", "")
    return {
        "uid": node.get("ID", ""), "name": desc.get("Hostname", "") or node.get("ID", ""), "labels": spec.get("Labels") or {},
        "resource_version": _version(node), "created_in_cluster": _time(node.get("CreatedAt")),
        "roles": [spec.get("Role") or "worker"],
        "kubelet_version": engine.get("EngineVersion", ""),
        "os_image": " ".join(p for p in (platform.get("OS"), platform.get("Architecture")) if p),
        "internal_ip": status.get("Addr", "") or "",
        "capacity": quantities, "allocatable": quantities,
        "conditions": [{"type": "Ready", "status": "True" if state == "ready" else "False", "reason": state,
                        "message": status.get("Message", "") or ""}],
        "taints": [],
        "ready": state == "ready",
        "unschedulable": availability != "active",
        "cpu_allocatable_m": cpu_m, "memory_allocatable_bytes": memory, "pods_allocatable": 0,
        "details": {"state": state, "availability": availability, "message": status.get("Message", "") or "",
                    "leader": bool(manager.get("Leader")), "reachability": manager.get("Reachability", ""),
                    "manager_address": manager.get("Addr", ""), "engine_labels": engine.get("Labels") or {}},
    }


def _ports(service):
    ports = (service.get("Endpoint") or {}).get("Ports") or ((service.get("Spec") or {}).get("EndpointSpec") or {}).get("Ports") or []
    return [{"protocol": p.get("Protocol", "tcp"), "target": p.get("TargetPort"), "published": p.get("PublishedPort"),
             "mode": p.get("PublishMode", "ingress")} for p in ports]


def service_fields(service, counts=None):
    spec = service.get("Spec") or {}
    template = spec.get("TaskTemplate") or {}
    container = template.get("ContainerSpec") or {}
    mode = spec.get("Mode") or {}
    status = service.get("ServiceStatus") or (counts or {}).get(service.get("ID")) or {}
    if "Replicated" in mode:
        kind, desired = "replicated", int((mode.get("Replicated") or {}).get("Replicas") or 0)
    elif "Global" in mode:
        kind, desired = "global", int(status.get("DesiredTasks") or 0)
    else:  # ReplicatedJob / GlobalJob (API 1.41)
        kind = next(iter(mode), "replicated").lower()
        desired = int(status.get("DesiredTasks") or 0)
    running = int(status.get("RunningTasks") or 0)
    resources = template.get("Resources") or {}
    update = service.get("UpdateStatus") or {}
    labels = spec.get("Labels") or {}
    return {
        "uid": service.get("ID", ""), "name": spec.get("Name", ""), "labels": labels,
        "resource_version": _version(service), "created_in_cluster": _time(service.get("CreatedAt")),
        "kind": WorkloadKind.SERVICE,
        "desired_replicas": desired, "ready_replicas": running, "available_replicas": running,
        "images": [_image(container.get("Image"))] if container.get("Image") else [],
        "selector": {},
        "paused": update.get("State") == "paused",
        "details": {
            "mode": kind, "image": container.get("Image", ""), "ports": _ports(service),
            "update_status": {k: update.get(k) for k in ("State", "Message") if update.get(k)},
            "constraints": (template.get("Placement") or {}).get("Constraints") or [],
            "reservations": _resources(resources.get("Reservations")), "limits": _resources(resources.get("Limits")),
            "networks": [n.get("Target") for n in (template.get("Networks") or spec.get("Networks") or []) if n.get("Target")],
            "stack": _stack(labels),
        },
    }


def _resources(value):
    value = value or {}
    return {"cpu_m": int(value.get("NanoCPUs") or 0) // 1_000_000, "memory_bytes": int(value.get("MemoryBytes") or 0)}


def task_fields(task, service_names, node_names):
    status, spec = task.get("Status") or {}, task.get("Spec") or {}
    container = spec.get("ContainerSpec") or {}
    state = status.get("State", "")
    service = service_names.get(task.get("ServiceID"), task.get("ServiceID", ""))
    slot = task.get("Slot")
    name = f"{service}.{slot}" if slot else f"{service}.{task.get('NodeID', '')}"
    reservations = (spec.get("Resources") or {}).get("Reservations") or {}
    addresses = [a for n in task.get("NetworksAttachments") or [] for a in n.get("Addresses") or []]
    error = status.get("Err", "") or ""
    desired = task.get("DesiredState", "")
    return {
        "uid": task.get("ID", ""), "name": name, "labels": task.get("Labels") or {},
        "resource_version": _version(task), "created_in_cluster": _time(task.get("CreatedAt")),
        "node_name": node_names.get(task.get("NodeID"), "") if task.get("NodeID") else "",
        "owner_kind": "Service", "owner_name": service,
        "phase": PHASES.get(state, "Pending"),
        "ready": state == "running",
        "restarts": 0,
        # Why a task that should run does not: the engine's error, else the state it is stuck in.
        "waiting_reason": ((error or state) if desired == "running" and state != "running" else "")[:64],
        "images": [_image(container.get("Image"))] if container.get("Image") else [],
        "pod_ip": addresses[0].split("/", 1)[0] if addresses else "",
        "cpu_request_m": int(reservations.get("NanoCPUs") or 0) // 1_000_000,
        "memory_request_bytes": int(reservations.get("MemoryBytes") or 0),
        "started": _time(status.get("Timestamp")) if state == "running" else None,
        "details": {"state": state, "desired_state": desired, "error": error, "message": status.get("Message", "") or "",
                    "slot": slot, "node_id": task.get("NodeID", ""), "service_id": task.get("ServiceID", ""),
                    "container_id": (status.get("ContainerStatus") or {}).get("ContainerID", ""),
                    "exit_code": (status.get("ContainerStatus") or {}).get("ExitCode")},
    }


def object_fields(kind, obj):
    """A network, secret or config: names and metadata, never a secret's or config's data."""
    if kind == "network":
        labels = obj.get("Labels") or {}
        return {"uid": obj.get("Id", ""), "name": obj.get("Name", ""), "labels": labels, "resource_version": "",
                "created_in_cluster": _time(obj.get("Created")), "kind": kind,
                "details": {"driver": obj.get("Driver", ""), "scope": obj.get("Scope", ""), "attachable": bool(obj.get("Attachable")),
                            "ingress": bool(obj.get("Ingress")), "internal": bool(obj.get("Internal"))}}
    spec = obj.get("Spec") or {}
    labels = spec.get("Labels") or {}
    return {"uid": obj.get("ID", ""), "name": spec.get("Name", ""), "labels": labels, "resource_version": _version(obj),
            "created_in_cluster": _time(obj.get("CreatedAt")), "kind": kind,
            "details": {"driver": (spec.get("Driver") or {}).get("Name", ""), "updated": obj.get("UpdatedAt", "")}}


# --- writing ----------------------------------------------------------------------------------

PAYLOAD_FIELDS = ("namespace_id", "workload_id", "phase", "ready", "restarts", "node_name", "kind", "desired_replicas", "ready_replicas")


def _payload(instance):
    data = {"id": instance.pk, "uid": instance.uid, "name": instance.name}
    for field in PAYLOAD_FIELDS:
        if hasattr(instance, field):
            data[field] = getattr(instance, field)
    if isinstance(instance, Pod):
        data["workload"] = instance.workload_id
    return data


def _event_name(model, instance=None):
    if model is Workload:
        return "workload"
    if model is SwarmObject:
        return instance.kind if instance is not None else "swarmobject"
    return model.__name__.lower()


class Change:
    """What one write changed; with ``topic``, each deletion is announced as it is found (who hears
    of it is decided by the row as it was), the updates once written (``announce_changes``)."""

    def __init__(self, topic=None):
        self.topic = topic
        self.updated = []  # (model, uid)
        self.deleted = []  # (model, uid)
        self.resources = set()

    def gone(self, instance):
        self.deleted.append((type(instance), instance.uid))
        if self.topic:
            emit(f"{_event_name(type(instance), instance)}.deleted", {"uid": instance.uid, "name": instance.name}, instance, self.topic)


def _sync_model(cluster, model, rows, started, change, resource, scope=None):
    """Upsert the rows that differ from what is stored and delete the ones the list proves gone."""
    scope = scope or {}
    fields = [name for name in rows[0] if name != "uid"] if rows else []
    stored = {}
    if fields:
        for values in model.objects.filter(cluster=cluster, **scope).values("uid", *fields):
            stored[values.pop("uid")] = values
    changed = []
    for row in rows:
        row = store.clean(row)
        old = stored.get(row["uid"])
        if old is None or any(old.get(k) != v for k, v in row.items() if k != "uid"):
            changed.append(row)
    failed = store.upsert(model, cluster, changed) if changed else []
    bad = {row["uid"] for row, _ in failed}
    for row, why in failed:
        log.warning("cluster %s: %s %s not stored: %s", cluster.pk, resource, row.get("name"), why)
    change.updated.extend((model, row["uid"]) for row in changed if row["uid"] not in bad)
    listed = {row["uid"] for row in rows}
    # Gone: missing from the read and not written since it began (then it is newer than the read).
    gone = model.objects.filter(cluster=cluster, synced__lt=started, **scope).exclude(uid__in=listed)
    if hasattr(model, "namespace"):
        gone = gone.select_related("namespace")
    uids = []
    for instance in gone:
        change.gone(instance)
        uids.append(instance.uid)
    if uids:
        model.objects.filter(cluster=cluster, uid__in=uids).delete()
        store.bury(cluster, uids)
    if changed or change.deleted:
        change.resources.add(resource)
    return [(row, why) for row, why in failed]


def write(cluster, data, announce=True):
    """Write what ``read`` returned: one transaction under the cluster's inventory lock; returns
    the counts.  ``announce``: emit each change on the cluster's topic after the commit."""
    started = data.get("started") or timezone.now()
    with_objects = "networks" in data
    with_nodes = "nodes" in data
    # A read of some services only (read(..., services=ids)): the rows of those services and their
    # tasks are replaced, nothing else is touched.
    partial = data.get("service_ids")
    change = Change(group_name("cluster", cluster.pk) if announce else None)
    with transaction.atomic(), batched():
        store.lock_inventory(cluster.pk)
        nodes = [node_fields(n) for n in data["nodes"]] if with_nodes else []
        counts = {}  # what ServiceStatus says, from the tasks (for engines before API 1.41)
        for task in data["tasks"]:
            count = counts.setdefault(task.get("ServiceID"), {"RunningTasks": 0, "DesiredTasks": 0})
            count["RunningTasks"] += (task.get("Status") or {}).get("State") == "running"
            count["DesiredTasks"] += task.get("DesiredState") == "running"
        services = [service_fields(s, counts) for s in data["services"]]
        stack_of_service = {s["uid"]: s["details"]["stack"] for s in services}
        if with_objects:
            objects = [object_fields(kind[:-1], o) for kind in ("networks", "secrets", "configs") for o in data[kind]]
            object_stacks = {o["labels"].get(STACK_LABEL) for o in objects if o["labels"].get(STACK_LABEL)}
        else:  # not read this time: the stored ones keep their stacks
            objects = None
            object_stacks = set(SwarmObject.objects.filter(cluster=cluster, namespace__isnull=False).values_list("namespace__name", flat=True))
        stacks = {DEFAULT_STACK} | set(stack_of_service.values()) | object_stacks
        if partial is not None:  # the stacks of the services not read stay
            stacks |= set(Workload.objects.filter(cluster=cluster, kind=WorkloadKind.SERVICE).exclude(uid__in=partial)
                          .values_list("namespace__name", flat=True))
        _sync_stacks(cluster, stacks, change)
        ns_ids = dict(Namespace.objects.filter(cluster=cluster, name__in=stacks).values_list("name", "id"))

        failed = _sync_model(cluster, Node, nodes, started, change, "nodes") if with_nodes else []
        node_ids, node_names = {}, {}
        for uid, pk, name in Node.objects.filter(cluster=cluster).values_list("uid", "id", "name"):
            node_ids[uid], node_names[uid] = pk, name
        for row in services:
            row["namespace_id"] = ns_ids[row["details"]["stack"]]
        service_scope = {"kind": WorkloadKind.SERVICE, **({"uid__in": partial} if partial is not None else {})}
        failed += _sync_model(cluster, Workload, services, started, change, "workloads", service_scope)
        workload_ids = dict(Workload.objects.filter(cluster=cluster, kind=WorkloadKind.SERVICE).values_list("uid", "id"))
        service_names = {s["uid"]: s["name"] for s in services}
        # A Swarm does not restart a task: it replaces it.  A slot's failed tasks are its current
        # task's "restarts" (the history keeps the last few), so restart alerts cover Swarm too.
        failures = {}
        for task in data["tasks"]:
            if (task.get("Status") or {}).get("State") in ("failed", "rejected"):
                slot = (task.get("ServiceID"), task.get("Slot") or task.get("NodeID"))
                failures[slot] = failures.get(slot, 0) + 1
        tasks = []
        for task in data["tasks"]:
            if task.get("ServiceID") not in service_names:
                continue  # its service was removed between the two reads: the task goes with it
            row = task_fields(task, service_names, node_names)
            row["namespace_id"] = ns_ids[stack_of_service[task["ServiceID"]]]
            row["workload_id"] = workload_ids.get(task["ServiceID"])
            row["node_id"] = node_ids.get(task.get("NodeID"))
            if task.get("DesiredState") == "running":
                row["restarts"] = failures.get((task.get("ServiceID"), task.get("Slot") or task.get("NodeID")), 0)
            tasks.append(row)
        failed += _sync_model(cluster, Pod, tasks, started, change, "pods",
                              {"details__service_id__in": partial} if partial is not None else None)
        if objects is not None:
            for row in objects:
                stack = row["labels"].get(STACK_LABEL)
                row["namespace_id"] = ns_ids.get(stack) if stack else None
            failed += _sync_model(cluster, SwarmObject, objects, started, change, "swarmobjects")
        store.record_warnings(cluster.pk, [store.clean({"resource": "swarm", "namespace": "", "name": str(row.get("name", "")),
                                                        "uid": str(row.get("uid", "")), "error": why[:500]}) for row, why in failed],
                              replace=partial is None)
        if partial is None:
            _prune_stacks(cluster, stacks, change)
        if announce:
            announce_changes(cluster, change)
        if change.resources:
            resources = frozenset(change.resources)
            # Alert rules follow (monitoring): after the commit, as for the Kubernetes watcher.
            transaction.on_commit(lambda: inventory_changed.send(sender=Cluster, cluster_id=cluster.pk, resources=resources))
    counts = {"nodes": len(nodes), "stacks": len(stacks), "services": len(services), "tasks": len(tasks)}
    if not with_nodes:
        del counts["nodes"]
    if with_objects:
        counts.update({kind: len(data[kind]) for kind in ("networks", "secrets", "configs")})
    return counts, change


def _sync_stacks(cluster, stacks, change):
    """A Namespace row per stack."""
    existing = {ns.name: ns for ns in Namespace.objects.filter(cluster=cluster)}
    for name in stacks:
        ns = existing.get(name)
        uid = f"stack:{name}"[:64]
        if ns is None:
            ns = Namespace.objects.create(cluster=cluster, name=name[:63], uid=uid, phase="Active")
            change.updated.append((Namespace, ns.uid))
        elif ns.uid != uid or ns.phase != "Active":
            ns.uid, ns.phase = uid, "Active"
            ns.save(update_fields=["uid", "phase", "synced"])
            change.updated.append((Namespace, ns.uid))
    if change.updated:
        change.resources.add("namespaces")


def _prune_stacks(cluster, stacks, change):
    """A stack gone from the swarm goes (after what was in it), unless a project holds it: then it
    only loses its uid, as a Kubernetes namespace does."""
    gone = Namespace.objects.filter(cluster=cluster).exclude(name__in=stacks)
    for ns in gone.exclude(uid="").filter(project__isnull=True):
        change.gone(ns)
    if store.forget_namespaces(gone).delete()[0]:
        change.resources.add("namespaces")


def announce_changes(cluster, change):
    """Live events for the rows ``change`` updated (read afresh, so each goes to its audience as
    written), after the transaction commits; the store's watcher path calls it too."""
    by_model = {}
    for model, uid in change.updated:
        by_model.setdefault(model, []).append(uid)
    for model, uids in by_model.items():
        rows = model.objects.filter(cluster=cluster, uid__in=uids)
        if hasattr(model, "namespace"):
            rows = rows.select_related("namespace")
        for instance in rows:
            emit(f"{_event_name(model, instance)}.updated", _payload(instance), instance, change.topic)


def sync_inventory(cluster, client):
    """Read the whole swarm and write it; returns the counts."""
    counts, _ = write(cluster, read(client))
    return counts
