"""Cluster health: ask the API server for its version; mark the cluster unavailable after a grace
period of failures and active again when it answers."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from clusters.events import cluster_changed
from clusters.kube.client import ClusterConnectionError, api_client, server_version
from clusters.kube.outbound import ConnectionNotAllowed
from clusters.models import Cluster, ClusterState
from clusters.signals import inventory_changed

# A cluster is only declared unavailable when it has not answered for this long.
GRACE = timedelta(seconds=20)


def check(cluster_id):
    """Check one cluster now; returns its state afterwards."""
    cluster = Cluster.objects.get(pk=cluster_id)
    if cluster.state not in (ClusterState.ACTIVE, ClusterState.UPDATING, ClusterState.UNAVAILABLE):
        return cluster.state
    if cluster.driver == "capi" and _deleted_outside_corral(cluster):
        return ClusterState.ERROR
    if cluster.is_swarm:
        version, error, not_allowed = _check_swarm(cluster)
    else:
        try:
            with api_client(cluster.credentials) as api:
                version = server_version(api)
            error, not_allowed = None, False
        except ClusterConnectionError as exc:
            version, error = None, str(exc)
            # The outbound policy refusing its address is no passing blip: no grace period.
            not_allowed = isinstance(exc.__cause__, ConnectionNotAllowed)

    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster_id)
        now = timezone.now()
        fields = []
        if error is None:
            cluster.last_seen = now
            cluster.kubernetes_version = version or cluster.kubernetes_version
            fields += ["last_seen", "kubernetes_version"]
            if cluster.state == ClusterState.UNAVAILABLE and cluster.set_state(ClusterState.ACTIVE, error=""):
                fields += ["state", "state_since", "last_error"]
        else:
            cluster.last_error = error
            fields.append("last_error")
            last_ok = cluster.last_seen or cluster.state_since
            if cluster.state != ClusterState.UNAVAILABLE and (not_allowed or now - last_ok >= GRACE):
                cluster.set_state(ClusterState.UNAVAILABLE)
                fields += ["state", "state_since"]
        cluster.save(update_fields=[*fields, "modified"])
        cluster_changed(cluster)
        if "state" in fields:
            transaction.on_commit(lambda: inventory_changed.send(sender=Cluster, cluster_id=cluster_id, resources=frozenset({"cluster"})))
    return cluster.state


def _check_swarm(cluster):
    """(engine version, error, refused by the outbound policy) of a Swarm: its manager answers and
    is still a manager."""
    from clusters.swarm.client import SwarmConnectionError
    from clusters.swarm.importer import probe

    try:
        return probe(cluster.credentials)["version"], None, False
    except SwarmConnectionError as exc:
        return None, str(exc), exc.cause == "not_allowed"


def _deleted_outside_corral(cluster):
    """A cluster made through Cluster API whose Cluster object is gone from the management
    cluster (deleted there, not through Corral): it goes to *error* saying so; removing it in Corral
    then forgets it."""
    from clusters.drivers import driver_for

    if driver_for(cluster).still_there(cluster) is not False:
        return False
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        if locked.set_state(ClusterState.ERROR, error="its Cluster object was deleted from the management cluster outside Corral; "
                            "remove it here to forget it"):
            locked.save(update_fields=["state", "state_since", "last_error", "modified"])
            cluster_changed(locked)
    return True
