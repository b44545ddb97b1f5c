"""What the workload endpoints of both kinds of cluster (Kubernetes, Swarm) share: the cluster must
be usable, and a ``WorkloadError`` from the cluster becomes the API's answer."""

from contextlib import contextmanager

from rest_framework import exceptions

from clusters.kube.workloads import WorkloadError
from clusters.models import ClusterState

USABLE = (ClusterState.ACTIVE, ClusterState.UPDATING)


def require_usable(cluster):
    if cluster.state not in USABLE:
        raise exceptions.ValidationError({"cluster": [f"the cluster is {cluster.state}; changes need an active cluster"]})


@contextmanager
def workload_errors():
    """A ``WorkloadError`` raised inside becomes a 400, a 404 or its own status."""
    try:
        yield
    except WorkloadError as exc:
        if exc.status == 400:
            raise exceptions.ValidationError({"detail": exc.message}) from None
        if exc.status == 404:
            raise exceptions.NotFound(exc.message) from None
        error = exceptions.APIException(exc.message)
        error.status_code = exc.status
        raise error from None
