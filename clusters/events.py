"""Live events about clusters, to the cluster's page and the dashboard feed."""

from portal.events import emit, group_name

# The dashboard: changes to every cluster its reader may see.
FEED_CLUSTERS = "clusters"


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
    emit(event, cluster_payload(cluster), cluster, group_name("cluster", cluster.pk), FEED_CLUSTERS)
