"""What a Service page and the API show about a Service beyond its inventory row: its endpoints,
read from the cluster on demand with Corral's credentials, only for a viewer the permission
engine lets see the Service."""

from dataclasses import dataclass, field

from clusters.kube import endpoints as kube_endpoints
from clusters.kube.client import ClusterConnectionError, api_client
from clusters.kube.workloads import WorkloadError
from clusters.models import ClusterState, Node, Pod
from portal.permissions import VIEW, can

READABLE = (ClusterState.ACTIVE, ClusterState.UPDATING)
READ_TIMEOUT = 5  # seconds: a page waits no longer for an unreachable cluster


class NotVisible(Exception):
    """The viewer may not see the Service (answer as for one that does not exist)."""


@dataclass
class Endpoints:
    rows: list = field(default_factory=list)
    error: str = ""  # why they could not be read, in words for people

    @property
    def ready(self):
        return sum(1 for r in self.rows if r["ready"])


def unreadable(cluster):
    """Why nothing can be read from ``cluster`` now, or ''."""
    if cluster.is_swarm:
        return cluster.kubernetes_only("reading endpoints")
    if cluster.state not in READABLE:
        return f"cluster {cluster.name} is {cluster.state}"
    if not cluster.api_endpoint and not (cluster.credentials or {}).get("server"):
        return f"cluster {cluster.name} has no API server address"
    return ""


def endpoints_for(user, service):
    """The endpoints of ``service`` as ``user`` may see them; NotVisible when they may not see it.
    Each row's ``pod_id``/``node_id`` is set when the viewer may open that pod/node in Corral."""
    if not can(user, VIEW, service):
        raise NotVisible()
    cluster = service.cluster
    problem = unreadable(cluster)
    if problem:
        return Endpoints(error=f"the endpoints cannot be read now: {problem}")
    try:
        api = api_client(cluster.credentials, timeout=READ_TIMEOUT)
    except ClusterConnectionError as exc:
        return Endpoints(error=f"the endpoints cannot be read now: {exc}")
    try:
        rows = kube_endpoints.read(api, service.namespace.name, service.name)
    except WorkloadError as exc:
        return Endpoints(error=f"the endpoints cannot be read now from cluster {cluster.name}: {exc.message}")
    finally:
        api.close()
    pods = dict(Pod.objects.restrict(user, VIEW).filter(cluster=cluster, namespace=service.namespace_id,
                                                        name__in={r["pod"] for r in rows if r["pod"]}).values_list("name", "pk"))
    nodes = dict(Node.objects.restrict(user, VIEW).filter(cluster=cluster, name__in={r["node"] for r in rows if r["node"]})
                 .values_list("name", "pk"))
    for row in rows:
        row["pod_id"], row["node_id"] = pods.get(row["pod"]), nodes.get(row["node"])
    return Endpoints(rows=rows)
