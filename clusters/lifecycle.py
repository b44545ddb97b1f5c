"""A cluster's lifecycle, one code path for every door (API, admin, portal): provisioning after a
cluster is created, removal, a sync on request.  Each starts an operation the user can follow."""

from django.db import transaction

from clusters import tasks
from clusters.events import cluster_changed
from clusters.models import Cluster, ClusterState, grant_creator_ownership
from portal import operations
from portal.models import OperationStatus

SYNCABLE = (ClusterState.ACTIVE, ClusterState.UPDATING, ClusterState.UNAVAILABLE)


class Refused(Exception):
    """The cluster's state does not allow it; the message says why."""


def start_provisioning(cluster, user):
    """A cluster was just created: its creator owns it, and its driver provisions it."""
    grant_creator_ownership(cluster, user)
    op = operations.start("provision", tasks.provision_cluster, cluster=cluster, user=user, args=(cluster.pk,))
    cluster_changed(cluster, event="cluster.created")
    return op


def start_removal(cluster, user):
    """Remove a cluster: a sandbox is torn down, an imported cluster forgotten (nothing in it is
    touched).  A removal that failed (the cluster in *error*) may be started again."""
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        under_way = locked.operations.filter(kind="remove", status__in=[OperationStatus.PENDING, OperationStatus.RUNNING])
        if locked.state == ClusterState.REMOVING and under_way.exists():
            raise Refused("the cluster is already being removed")
        locked.set_state(ClusterState.REMOVING)
        locked.save(update_fields=["state", "state_since", "modified"])
        cluster_changed(locked)
        return operations.start("remove", tasks.remove_cluster, cluster=locked, user=user, args=(locked.pk,))


def start_sync(cluster, user):
    """Re-read the cluster's whole inventory now."""
    if cluster.state not in SYNCABLE:
        raise Refused(f"a {cluster.state} cluster cannot be synced")
    return operations.start("sync", tasks.sync_cluster, cluster=cluster, user=user, args=(cluster.pk,))


def start_capi_change(cluster, user, replicas=None, version=None):
    """Scale a capi cluster's pools (``replicas``: pool -> count) or upgrade its version."""
    if cluster.driver != "capi":
        raise Refused("only clusters made through Cluster API are scaled and upgraded by Corral")
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        if locked.state != ClusterState.ACTIVE:
            raise Refused(f"a {locked.state} cluster cannot be changed; wait until it is active")
        busy = locked.operations.filter(kind__in=["scale", "upgrade"], status__in=[OperationStatus.PENDING, OperationStatus.RUNNING])
        if busy.exists():
            raise Refused("a scale or upgrade of this cluster is already under way")
        kind = "upgrade" if version else "scale"
        return operations.start(kind, tasks.change_capi_cluster, cluster=locked, user=user, args=(locked.pk, replicas, version))


def removal_consequences(cluster):
    """What removing the cluster does, in words, for the confirmation (API-free: the page and the
    admin's delete confirmation show the same)."""
    from clusters.models import Namespace, Node, Pod, Workload

    counts = {
        "nodes": Node.objects.filter(cluster=cluster).count(),
        "namespaces": Namespace.objects.filter(cluster=cluster).count(),
        "workloads": Workload.objects.filter(cluster=cluster).count(),
        "pods": Pod.objects.filter(cluster=cluster).count(),
        "projects": cluster.projects.count() if hasattr(cluster, "projects") else 0,
        "members": cluster.memberships.count() if hasattr(cluster, "memberships") else 0,
    }
    if cluster.driver == "capi":
        first = (f"Cluster API deletes “{cluster.name}” on its management cluster: its {counts['nodes']} machines and "
                 "their infrastructure are torn down and everything running in it is gone for good.")
    elif cluster.driver == "sandbox":
        first = (f"The sandbox “{cluster.name}” is torn down: its control plane and its {counts['nodes']} nodes stop "
                 "on the Corral host and everything running in it is gone for good.")
    else:
        first = (f"Corral forgets “{cluster.name}”. The cluster itself is not changed: its workloads keep running, "
                 "and Corral's RoleBindings, ResourceQuotas and LimitRanges stay in it until you delete them there.")
    return [
        first,
        f"Corral deletes its records of the cluster: {counts['nodes']} nodes, {counts['namespaces']} namespaces, "
        f"{counts['workloads']} workloads and {counts['pods']} pods in its inventory, the events it kept, "
        f"{counts['projects']} projects with their memberships and {counts['members']} cluster memberships.",
        "Its operations stay in the history; the removal itself is an operation you can follow.",
    ]
