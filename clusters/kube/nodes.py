"""Node maintenance: cordon, uncordon and drain, as `kubectl cordon/uncordon/drain` do them.

A drain cordons the node, then evicts its pods through the Eviction API, so PodDisruptionBudgets
are honoured: an eviction the budget refuses (429) is retried until the timeout, and the failure
names the pod and what the API server said about the budget.  DaemonSet pods (their controller
would put them straight back) and mirror pods (the kubelet's static pods, which the API cannot
delete) are left, as kubectl leaves them.  Pods no controller would recreate and pods with
emptyDir data are refused unless the caller allows them, as kubectl's --force and
--delete-emptydir-data do."""

import time
from dataclasses import dataclass, field
from urllib.parse import quote

from clusters.kube.workloads import WorkloadError, call

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
RETRY_SECONDS = 2


class DrainBlocked(Exception):
    """The drain could not finish; the message names what blocked it."""


def cordon(api, name, unschedulable=True):
    """Mark the node (un)schedulable; returns the node as the API server answers."""
    return call(api, "PATCH", f"/api/v1/nodes/{name}", {"spec": {"unschedulable": unschedulable or None}},
                content_type="application/merge-patch+json")


@dataclass
class DrainPlan:
    evict: list = field(default_factory=list)  # pod objects
    skipped: list = field(default_factory=list)  # (namespace/name, why)
    refused: list = field(default_factory=list)  # (namespace/name, why)


def _key(pod):
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def plan(pods, force=False, delete_emptydir_data=False, terminating=frozenset()):
    """Which of the node's pods a drain evicts, which it leaves, and which stop it.
    ``terminating``: namespaces being deleted (their pods go with them; no eviction is possible)."""
    result = DrainPlan()
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        phase = (pod.get("status") or {}).get("phase")
        owners = meta.get("ownerReferences") or []
        controller = next((o for o in owners if o.get("controller")), None)
        if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
            result.skipped.append((_key(pod), "mirror pod (static, managed by the kubelet)"))
            continue
        if meta.get("deletionTimestamp"):
            result.skipped.append((_key(pod), "already being deleted"))
            continue
        if meta.get("namespace") in terminating:
            result.skipped.append((_key(pod), "its namespace is being deleted"))
            continue
        if controller and controller.get("kind") == "DaemonSet":
            result.skipped.append((_key(pod), f"DaemonSet pod ({controller.get('name')})"))
            continue
        finished = phase in ("Succeeded", "Failed")
        if controller is None and not finished and not force:
            result.refused.append((_key(pod), "no controller would recreate it (allow with force)"))
            continue
        if not finished and not delete_emptydir_data and any("emptyDir" in v for v in spec.get("volumes") or []):
            result.refused.append((_key(pod), "it has emptyDir data that eviction deletes (allow with delete_emptydir_data)"))
            continue
        result.evict.append(pod)
    return result


def pods_on(api, node_name):
    return call(api, "GET", f"/api/v1/pods?fieldSelector={quote('spec.nodeName=' + node_name)}").get("items") or []


def terminating_namespaces(api):
    items = call(api, "GET", "/api/v1/namespaces").get("items") or []
    return {n["metadata"]["name"] for n in items if (n.get("status") or {}).get("phase") == "Terminating"}


def evict(api, pod):
    """Ask for one eviction.  Returns None when done (or the pod is gone), else why it was refused
    (a PodDisruptionBudget: the API server answers 429)."""
    meta = pod["metadata"]
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": meta["name"], "namespace": meta["namespace"]}}
    try:
        call(api, "POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/eviction", body)
    except WorkloadError as exc:
        if exc.status == 404:
            return None
        if exc.cluster_status == 403 and "being terminated" in exc.message:
            return None  # its namespace is being deleted since the plan was made: the pod goes with it
        if exc.cluster_status == 429:  # a PodDisruptionBudget says not now
            return exc.message.removeprefix("the cluster answered 429: ")
        raise
    return None


def _gone(api, pod):
    meta = pod["metadata"]
    try:
        current = call(api, "GET", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}")
    except WorkloadError as exc:
        if exc.status == 404:
            return True
        raise
    return (current.get("metadata") or {}).get("uid") != meta.get("uid")


def drain(api, node_name, progress, timeout=120, force=False, delete_emptydir_data=False, clock=time.monotonic, sleep=time.sleep):
    """Cordon ``node_name`` and evict its pods; ``progress(percent, message)`` hears each step.
    Returns the names of the evicted pods; raises DrainBlocked naming what stopped it."""
    deadline = clock() + timeout
    cordon(api, node_name)
    progress(5, f"cordoned {node_name}: no new pods are scheduled on it")
    work = plan(pods_on(api, node_name), force=force, delete_emptydir_data=delete_emptydir_data, terminating=terminating_namespaces(api))
    for key, why in work.skipped:
        progress(5, f"left {key}: {why}")
    if work.refused:
        names = "; ".join(f"{key}: {why}" for key, why in work.refused)
        raise DrainBlocked(f"{len(work.refused)} pod(s) cannot be evicted from {node_name}, nothing was evicted: {names}")
    total = len(work.evict)
    progress(10, f"evicting {total} pod(s)")
    waiting = list(work.evict)
    blocked = {}
    evicted = []
    while waiting:
        still = []
        for pod in waiting:
            why = evict(api, pod)
            if why is None:
                evicted.append(pod)
                blocked.pop(_key(pod), None)
                progress(10 + 70 * len(evicted) // max(total, 1), f"evicted {_key(pod)}")
            else:
                if _key(pod) not in blocked:
                    progress(10 + 70 * len(evicted) // max(total, 1), f"waiting to evict {_key(pod)}: {why}")
                blocked[_key(pod)] = why
                still.append(pod)
        waiting = still
        if waiting:
            if clock() >= deadline:
                names = "; ".join(f"{key}: {why}" for key, why in blocked.items())
                raise DrainBlocked(f"timed out after {timeout:g}s with {len(waiting)} pod(s) still on {node_name}, "
                                   f"evictions refused: {names}")
            sleep(RETRY_SECONDS)
    progress(80, f"waiting for {len(evicted)} evicted pod(s) to terminate")
    remaining = list(evicted)
    while remaining:
        remaining = [pod for pod in remaining if not _gone(api, pod)]
        if not remaining:
            break
        if clock() >= deadline:
            raise DrainBlocked(f"timed out after {timeout:g}s waiting for {len(remaining)} evicted pod(s) to terminate: "
                               + ", ".join(_key(p) for p in remaining))
        sleep(1)
    progress(99, f"drained {node_name}: {len(evicted)} pod(s) evicted, {len(work.skipped)} left")
    return [_key(p) for p in evicted]
