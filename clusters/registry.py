"""Registering an imported cluster once its credentials are verified: one place for the API,
the admin and the portal."""

from django.db import transaction
from django.utils import timezone

from clusters.events import cluster_changed
from clusters.models import Cluster, ClusterKind, ClusterState, grant_creator_ownership


def register_imported(*, name, credentials, version, user, description="", labels=None, provider="", kind=ClusterKind.KUBERNETES):
    """Store the cluster (active), make ``user`` its owner, give it the default projects, and
    start its first sync once the transaction commits.  Returns the cluster."""
    from clusters import tasks
    from portal import operations
    from projects.defaults import create_default_projects

    with transaction.atomic():
        cluster = Cluster(
            name=name, description=description, labels=labels or {}, provider=provider, driver="imported", kind=kind,
            api_endpoint=credentials.get("server") or credentials.get("endpoint", ""), credentials=credentials, kubernetes_version=version,
            last_seen=timezone.now(), created_by=user,
        )
        cluster.set_state(ClusterState.ACTIVE)
        cluster.full_clean(exclude=["credentials", "slug"])
        cluster.save()
        grant_creator_ownership(cluster, user)
        create_default_projects(cluster)
        cluster_changed(cluster, event="cluster.created")
        operations.start("sync", tasks.sync_cluster, cluster=cluster, user=user, args=(cluster.pk,))
    return cluster
