"""How clusters, their memberships, inventory and operations are scoped (registered with the
permission engine in ``ClustersConfig.ready``)."""

from django.db.models import Q

from clusters.roles import CLUSTER_MEMBER, CLUSTER_OWNER
from portal import permissions as p

CREATE_CLUSTERS = "clusters-create"
USE_SANDBOX = "sandbox-use"

OWNER_ONLY = p.role_levels(CLUSTER_OWNER)
# Cluster-scoped basics (the cluster, nodes, namespaces, memberships): members read them.
BASICS = {**OWNER_ONLY, p.VIEW: frozenset({CLUSTER_OWNER, CLUSTER_MEMBER})}


def register():
    from clusters.events import FEED_CLUSTERS
    from clusters.models import Cluster, ClusterEvent, ClusterMembership, Namespace, Node, Pod, Service, SwarmObject, Workload
    from portal import events
    from portal.models import Operation

    p.register_scope("cluster", lambda: ClusterMembership.objects.all(), "cluster_id")
    p.register_global_permission(CREATE_CLUSTERS, "Create clusters (import and provision)")
    p.register_global_permission(USE_SANDBOX, "Provision sandbox clusters on the Corral host")

    # Adding a cluster needs the global permission; the creator then owns it.
    p.register(Cluster, p.Grant("cluster", "pk", BASICS), add_permission=CREATE_CLUSTERS)
    p.register(ClusterMembership, p.Grant("cluster", "cluster", BASICS))
    p.register(Node, p.Grant("cluster", "cluster", BASICS))
    # Namespaced inventory: the cluster's owners; projects add their own grants (projects app).
    for model in (Workload, Pod, Service, ClusterEvent, SwarmObject):
        p.register(model, p.Grant("cluster", "cluster", OWNER_ONLY))
    p.register(Namespace, p.Grant("cluster", "cluster", BASICS))
    # An operation: whoever started it, and the owners of its cluster.
    p.register(
        Operation,
        p.Grant("cluster", "cluster", OWNER_ONLY),
        extra=lambda user, action: Q(created_by=user),
        extra_audience=lambda op: {p.user_token(op.created_by_id)} if op.created_by_id else set(),
    )
    # What the websocket may follow (whoever may view the object hears of it and of what lies in it).
    events.register_topic("cluster", Cluster)
    events.register_topic("operation", Operation)
    events.register_feed(FEED_CLUSTERS)
