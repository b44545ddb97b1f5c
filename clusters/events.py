"""Live events about clusters, to the cluster's group and the dashboard feed."""

from portal.events import FEED_CLUSTERS, emit


def cluster_payload(cluster):
    return {
        "id": cluster.pk,
        "name": cluster.name,
        "state": cluster.state,
        "kubernetes_version": cluster.kubernetes_version,
        "last_seen": cluster.last_seen.isoformat() if cluster.last_seen else None,
        "last_error": cluster.last_error,
    }


def cluster_changed(cluster, event="cluster.updated"):
    emit(event, cluster_payload(cluster), f"cluster-{cluster.pk}", FEED_CLUSTERS)
