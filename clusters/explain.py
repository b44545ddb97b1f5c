"""What Kubernetes is doing, in plain words: which workload an event is about, and why a workload
is below its desired count (a ReplicaSet that may not create pods because of a quota, a pod that
cannot be scheduled or pull its image)."""

import re

from django.db.models import Q

from clusters.models import Pod, Workload

# "exceeded quota: corral-quota, requested: pods=1, used: pods=2, limited: pods=2"
_EXCEEDED = re.compile(r"exceeded quota: ([^,]+), requested: (.+?), used: (.+?), limited: (.+)$")
_MUST_SPECIFY = re.compile(r"failed quota: ([^:]+): must specify (.+)$")
WHY_REASONS = ("FailedCreate", "FailedScheduling", "Failed", "BackOff", "FailedMount", "FailedAttachVolume", "Evicted")
KIND_OF = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset", "Job": "job", "CronJob": "cronjob"}


def plain_words(event):
    """A sentence saying what a Warning event means for its workload ('' for other events)."""
    reason, message = event.reason, " ".join((event.message or "").split())
    if event.type != "Warning":
        return ""
    if reason == "FailedCreate":
        exceeded = _EXCEEDED.search(message)
        if exceeded:
            quota, requested, used, limited = exceeded.groups()
            return (f"Kubernetes may not create more pods: the namespace's quota “{quota}” is used up "
                    f"(a pod asks for {requested}; used {used} of {limited}). Raise the project's quota or scale down.")
        specify = _MUST_SPECIFY.search(message)
        if specify:
            return (f"Kubernetes may not create pods: the quota “{specify.group(1)}” requires every container to state "
                    f"{specify.group(2)}. Give the containers resources, or the project container defaults.")
        return f"Kubernetes cannot create pods: {message}"
    if reason == "FailedScheduling":
        return f"Pods cannot be placed on a node: {message}"
    if reason in ("Failed", "BackOff") and ("pull" in message.lower() or "image" in message.lower()):
        return f"A container image cannot be pulled: {message}"
    if reason == "BackOff":
        return f"A container keeps crashing and is restarted with back-off: {message}"
    return f"{reason}: {message}"


def _replicaset_deployment(name):
    """A Deployment's ReplicaSet is named <deployment>-<pod-template-hash>."""
    return name.rsplit("-", 1)[0] if "-" in name else None


def workloads_of(events):
    """The uid of the workload each of ``events`` (of one cluster) is about: its own, its
    ReplicaSet's, or its pod's: ``{event pk: uid or None}``, in at most two queries of a few
    columns (a query per event, of whole rows, was a tenth of the watcher's CPU under a burst)."""
    found = {event.pk: None for event in events}
    direct, by_pod = {}, {}
    for event in events:
        kind, name = event.involved_kind, event.involved_name
        if event.namespace_id is None:
            continue
        if kind in KIND_OF:
            direct.setdefault((event.namespace_id, KIND_OF[kind], name), []).append(event)
        elif kind == "ReplicaSet" and _replicaset_deployment(name):
            direct.setdefault((event.namespace_id, "deployment", _replicaset_deployment(name)), []).append(event)
        elif kind == "Pod":
            by_pod.setdefault((event.namespace_id, name), []).append(event)
    if not events or not (direct or by_pod):
        return found
    cluster_id = events[0].cluster_id
    if direct:
        workloads = Workload.objects.filter(cluster_id=cluster_id, namespace_id__in={k[0] for k in direct},
                                            name__in={k[2] for k in direct}).order_by("pk")
        for namespace_id, kind, name, uid in workloads.values_list("namespace_id", "kind", "name", "uid"):
            for event in direct.get((namespace_id, kind, name), ()):
                if found[event.pk] is None:
                    found[event.pk] = uid
    if by_pod:
        pods = Pod.objects.filter(cluster_id=cluster_id, namespace_id__in={k[0] for k in by_pod},
                                  name__in={k[1] for k in by_pod}).order_by("pk")
        seen = set()
        for namespace_id, name, uid in pods.values_list("namespace_id", "name", "workload__uid"):
            if (namespace_id, name) in seen:
                continue  # one pod of a name (a StatefulSet's pod made again): the first
            seen.add((namespace_id, name))
            for event in by_pod.get((namespace_id, name), ()):
                found[event.pk] = uid
    return found


def why_not_ready(workloads, events):
    """{workload pk: plain words} for the workloads below their desired count, from the latest
    Warning event about each (its own, its ReplicaSets', its pods'); ``events`` is already
    restricted to what the reader may see."""
    behind = [w for w in workloads if w.ready_replicas < w.desired_replicas]
    if not behind:
        return {}
    about = Q()
    for w in behind:
        about |= Q(namespace_id=w.namespace_id, involved_kind__in=list(KIND_OF), involved_name=w.name)
        if w.kind == "deployment":
            about |= Q(namespace_id=w.namespace_id, involved_kind="ReplicaSet", involved_name__startswith=f"{w.name}-")
        about |= Q(namespace_id=w.namespace_id, involved_kind="Pod", involved_name__startswith=f"{w.name}-")
    found = events.filter(about, type="Warning", reason__in=WHY_REASONS).order_by("-last_seen", "-pk")[:200]
    reasons = {}
    for event in found:
        for w in behind:
            if w.pk in reasons or event.namespace_id != w.namespace_id:
                continue
            name, kind = event.involved_name, event.involved_kind
            if (kind in KIND_OF and KIND_OF[kind] == w.kind and name == w.name) or (
                    kind in ("ReplicaSet", "Pod") and name.startswith(f"{w.name}-")):
                reasons[w.pk] = plain_words(event)
    return reasons


def event_payload(event, workload_uid=None):
    """What a live event says of a Kubernetes event (the same fields the page shows)."""
    return {
        "id": event.pk, "uid": event.uid, "name": event.name, "type": event.type, "reason": event.reason,
        "message": event.message, "count": event.count, "involved_kind": event.involved_kind,
        "involved_name": event.involved_name, "namespace_id": event.namespace_id,
        "namespace": event.namespace.name if event.namespace_id else "",
        "last_seen": event.last_seen.isoformat() if event.last_seen else None,
        "workload_uid": workload_uid,
        # The page shows it while the workload is below its desired count (the workload's own live
        # update may come before or after this event).
        "why": plain_words(event) if workload_uid is not None and event.reason in WHY_REASONS else "",
    }

