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
    if cluster.is_swarm:
        version, error, not_allowed = _check_swarm(cluster)
    else:
        try:
            api = api_client(cluster.credentials)
            try:
                version = server_version(api)
            finally:
                api.close()
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
            cluster.kubernetes_version = version
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
