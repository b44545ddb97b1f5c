"""CAPI's view of a Cluster (its v1beta2 conditions, phase, replica counts) in plain words and a
percentage, for the operation that follows it.  Pure functions of the objects CAPI reports."""

# The milestones of a new cluster, in order: (condition, percent once True, words).
MILESTONES = [
    ("InfrastructureReady", 25, "the infrastructure is ready"),
    ("ControlPlaneInitialized", 45, "the control plane is initialized (its first machine answers)"),
    ("ControlPlaneAvailable", 65, "the control plane is available"),
    ("WorkersAvailable", 90, "the worker machines are running"),
]
WAITING = {
    "InfrastructureReady": "waiting for the infrastructure (network, load balancer) to be ready",
    "ControlPlaneInitialized": "waiting for the first control-plane machine to boot and initialize the control plane",
    "ControlPlaneAvailable": "waiting for the control plane to be available",
    "WorkersAvailable": "waiting for the worker machines to run",
}


def conditions(obj):
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}


def is_true(obj, condition):
    found = conditions(obj).get(condition)
    if found is not None:
        return found.get("status") == "True"
    init = (obj.get("status") or {}).get("initialization") or {}
    return {"InfrastructureReady": init.get("infrastructureProvisioned"),
            "ControlPlaneInitialized": init.get("controlPlaneInitialized")}.get(condition) is True


def failure(obj):
    """Why CAPI gave up on the cluster, in its words (None while it has not)."""
    status = obj.get("status") or {}
    old = (status.get("deprecated") or {}).get("v1beta1") or {}
    if old.get("failureMessage") or old.get("failureReason"):
        return f"Cluster API reports a failure: {old.get('failureReason') or ''} {old.get('failureMessage') or ''}".strip()
    if status.get("phase") == "Failed":
        return "Cluster API reports the cluster failed"
    return None


def replicas(obj, part):
    """(desired, available, up to date) of ``part`` ("controlPlane" or "workers")."""
    counts = (obj.get("status") or {}).get(part) or {}
    return counts.get("desiredReplicas") or 0, counts.get("availableReplicas") or 0, counts.get("upToDateReplicas") or 0


def reached(obj):
    """The milestones reached so far, in order: [(condition, percent, words)]."""
    return [m for m in MILESTONES if is_true(obj, m[0])]


def provisioning(obj):
    """(percent, words) of a cluster being made; the percent grows with each milestone reached."""
    phase = (obj.get("status") or {}).get("phase") or "Pending"
    percent, words, said_so_far = 10, f"Cluster API accepted the cluster (phase {phase})", ""
    for condition, reached, said in MILESTONES:
        if not is_true(obj, condition):
            why = conditions(obj).get(condition, {})
            detail = why.get("message") or why.get("reason") or ""
            words = WAITING[condition] + (f": {detail}" if detail and detail != "Waiting" else "")
            if condition == "WorkersAvailable":
                desired, available, _ = replicas(obj, "workers")
                words = f"{WAITING[condition]}: {available} of {desired} available"
            done = f"{said_so_far}; " if said_so_far else ""
            return percent, f"{done}{words} (phase {phase})"
        percent, words, said_so_far = reached, said, said
    return 95, f"{words} (phase {phase})"


def machines_summary(machines, version=None):
    """'3 of 5 machines running, 2 on v1.35.0' for the operation following a scale or an upgrade."""
    running = sum(1 for m in machines if (m.get("status") or {}).get("phase") == "Running")
    text = f"{running} of {len(machines)} machines running"
    if version:
        on = sum(1 for m in machines if (m.get("spec") or {}).get("version") == version and (m.get("status") or {}).get("phase") == "Running")
        text += f", {on} running {version}"
    deleting = sum(1 for m in machines if (m.get("metadata") or {}).get("deletionTimestamp"))
    if deleting:
        text += f", {deleting} being deleted"
    return text


def settled(obj, workers_wanted=None):
    """Has CAPI caught up with the topology: every machine available and up to date?"""
    status = obj.get("status") or {}
    if status.get("observedGeneration") is not None and status["observedGeneration"] < (obj.get("metadata") or {}).get("generation", 0):
        return False
    for part in ("controlPlane", "workers"):
        desired, available, up_to_date = replicas(obj, part)
        if available != desired or up_to_date != desired:
            return False
    if workers_wanted is not None and replicas(obj, "workers")[0] != workers_wanted:
        return False
    return is_true(obj, "ControlPlaneAvailable")
