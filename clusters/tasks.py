"""Celery tasks for clusters: provisioning, removal and health.  Idempotent: each re-reads the
cluster and does nothing when it is no longer in the state the task is for."""

import logging

from celery import shared_task
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from clusters import health, sync
from clusters.drivers import driver_for
from clusters.events import cluster_changed
from clusters.kube.client import api_client, server_version
from clusters.models import Cluster, ClusterState
from portal import operations, spread
from portal.operations import Progress
from projects.defaults import create_default_projects

log = logging.getLogger(__name__)


@shared_task(ignore_result=True, acks_late=True)
def provision_cluster(operation_id, cluster_id):
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    with Progress(operation_id) as progress:
        if cluster is None or cluster.state not in (ClusterState.PENDING, ClusterState.PROVISIONING, ClusterState.ERROR):
            progress.step(100, "nothing to do: the cluster is gone or already provisioned")
            return
        _set_state(cluster, ClusterState.PROVISIONING, error="")
        progress.step(5, f"provisioning with the {cluster.driver} driver")
        try:
            endpoint, credentials = driver_for(cluster).provision(cluster, progress.step)
            progress.step(95, "checking the API server")
            api = api_client(credentials)
            try:
                version = server_version(api)
            finally:
                api.close()
        except Exception as exc:
            _set_state(cluster, ClusterState.ERROR, error=str(exc))
            raise
        with transaction.atomic():
            cluster = Cluster.objects.select_for_update().get(pk=cluster_id)
            cluster.api_endpoint = endpoint
            cluster.credentials = credentials
            cluster.kubernetes_version = version or cluster.driver_config.get("version", "")  # a capi cluster's, if the server does not say
            cluster.last_seen = timezone.now()
            cluster.set_state(ClusterState.ACTIVE, error="")
            cluster.save()
            create_default_projects(cluster)
            cluster_changed(cluster)
        progress.step(100, f"cluster is active, Kubernetes {cluster.kubernetes_version or '(version not told)'}")
    transaction.on_commit(lambda: sync_cluster_quietly.delay(cluster_id))


@shared_task(ignore_result=True, acks_late=True)
def remove_cluster(operation_id, cluster_id):
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    with Progress(operation_id) as progress:
        if cluster is None:
            progress.step(100, "already removed")
            return
        driver_for(cluster).teardown(cluster, progress.step)
        progress.step(80, "deleting the cluster's records")
        cluster_changed(cluster, event="cluster.deleted")
        cluster.delete()


@shared_task(ignore_result=True, acks_late=True, time_limit=65 * 60, soft_time_limit=62 * 60)
def change_capi_cluster(operation_id, cluster_id, replicas=None, version=None):
    """Scale a capi cluster's pools and/or upgrade it (clusters.capi.driver), followed as an
    operation until Cluster API has rolled the machines."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    with Progress(operation_id) as progress:
        if cluster is None or cluster.driver != "capi":
            progress.step(100, "nothing to do: the cluster is gone")
            return
        _set_state(cluster, ClusterState.UPDATING)
        config = driver_for(cluster).change(cluster, progress.step, replicas=replicas, version=version)
        with transaction.atomic():
            locked = Cluster.objects.select_for_update().get(pk=cluster_id)
            locked.driver_config = config
            if version:
                locked.kubernetes_version = version  # until a sync reads the server's own /version
            locked.set_state(ClusterState.ACTIVE, error="")
            locked.save()
            cluster_changed(locked)
        progress.step(100, "Cluster API has caught up: every machine is available and up to date")
    transaction.on_commit(lambda: sync_cluster_quietly.delay(cluster_id))


def _change_failed(op, reason):
    """A scale or upgrade that failed leaves the cluster managed (active) with the reason."""
    cluster = Cluster.objects.filter(pk=op.cluster_id).first()
    if cluster is not None and cluster.state == ClusterState.UPDATING:
        _set_state(cluster, ClusterState.ACTIVE, error=f"{op.kind} failed: {reason}")


def _provision_failed(op, reason):
    cluster = Cluster.objects.filter(pk=op.cluster_id).first()
    if cluster is not None and cluster.state in (ClusterState.PENDING, ClusterState.PROVISIONING):
        _set_state(cluster, ClusterState.ERROR, error=f"provisioning failed: {reason}")


def _removal_failed(op, reason):
    """A removal that failed leaves the cluster in ``error`` with the reason; removing it again
    (API DELETE, admin) retries."""
    cluster = Cluster.objects.filter(pk=op.cluster_id).first()
    if cluster is not None and cluster.state == ClusterState.REMOVING:
        _set_state(cluster, ClusterState.ERROR, error=f"removal failed: {reason}")


def register_failure_handlers():
    operations.on_failure("provision", _provision_failed)
    operations.on_failure("remove", _removal_failed)
    operations.on_failure("scale", _change_failed)
    operations.on_failure("upgrade", _change_failed)


def _pending_key(kind, cluster_id):
    return f"clusters:pending:{kind}:{cluster_id}"


def enqueue_once(kind, task, cluster_id, ttl, countdown=0):
    """Queue ``task(cluster_id)`` (to run ``countdown`` seconds from now) unless one is already
    queued or running: however long a cluster is down or the workers are behind, each cluster has
    at most one such task waiting."""
    if cache.add(_pending_key(kind, cluster_id), 1, ttl):
        try:
            task.apply_async((cluster_id,), countdown=countdown)
        except Exception:
            cache.delete(_pending_key(kind, cluster_id))  # nothing was queued: the next round tries again
            raise
        return True
    return False


@shared_task(ignore_result=True, acks_late=True, time_limit=120, soft_time_limit=100)
def check_cluster(cluster_id):
    try:
        return health.check(cluster_id)
    finally:
        cache.delete(_pending_key("health", cluster_id))


@shared_task(ignore_result=True)
def check_all_clusters():
    for cluster_id in Cluster.objects.monitored().values_list("pk", flat=True):
        enqueue_once("health", check_cluster, cluster_id, ttl=300, countdown=spread.countdown("health", cluster_id, check_all_clusters.name))


def _set_state(cluster, state, error=None):
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        if locked.set_state(state, error=error):
            locked.save(update_fields=["state", "state_since", "last_error", "modified"])
            cluster_changed(locked)
        cluster.state = locked.state


@shared_task(ignore_result=True, acks_late=True, time_limit=15 * 60, soft_time_limit=14 * 60)
def sync_cluster(operation_id, cluster_id):
    """A user-requested full sync, followed as an operation."""
    with Progress(operation_id) as progress:
        sync.sync(cluster_id, progress=progress.step, wait=sync.LOCK_WAIT)


@shared_task(ignore_result=True, acks_late=True, time_limit=15 * 60, soft_time_limit=14 * 60)
def sync_cluster_quietly(cluster_id):
    """The periodic full resync of one cluster (no operation row: it runs every few minutes)."""
    try:
        return sync.sync(cluster_id, wait=sync.LOCK_WAIT)
    except (sync.SyncBusy, sync.SyncFailed) as exc:
        log.info("sync of cluster %s skipped: %s", cluster_id, exc)
    finally:
        cache.delete(_pending_key("sync", cluster_id))


@shared_task(ignore_result=True)
def sync_all_clusters():
    for cluster_id in Cluster.objects.filter(state__in=[ClusterState.ACTIVE, ClusterState.UPDATING]).values_list("pk", flat=True):
        if sync.due(cluster_id):
            enqueue_once("sync", sync_cluster_quietly, cluster_id, ttl=30 * 60,
                         countdown=spread.countdown("sync", cluster_id, sync_all_clusters.name))


@shared_task(ignore_result=True, acks_late=True, time_limit=65 * 60, soft_time_limit=62 * 60)
def drain_node(operation_id, node_id, options):
    """Drain a node (clusters.kube.nodes.drain), followed as an operation; the audit trail says
    what was evicted, or what blocked it, in the name of whoever asked."""
    from clusters.kube import nodes as kube_nodes
    from clusters.kube.inventory import apply_change
    from clusters.models import Node
    from portal.audit import audit_context, record

    node = Node.objects.select_related("cluster").filter(pk=node_id).first()
    with Progress(operation_id) as progress:
        if node is None:
            raise kube_nodes.DrainBlocked("the node is no longer in Corral's inventory")
        who = progress.op.created_by
        api = api_client(node.cluster.credentials)
        try:
            with audit_context(who, "task"):
                try:
                    evicted = kube_nodes.drain(api, node.name, progress.step, timeout=options.get("timeout", 120),
                                               force=options.get("force", False), delete_emptydir_data=options.get("delete_emptydir_data", False))
                except Exception as exc:
                    record("action", node, message=f"drain failed: {exc}")
                    raise
                finally:
                    _remember_node(node, api, apply_change)
                record("action", node, after={"evicted": evicted}, message=f"drained: {len(evicted)} pod(s) evicted")
        finally:
            api.close()


def _remember_node(node, api, apply_change):
    """The node as it is now (cordoned) in the inventory at once; the watcher confirms it."""
    from clusters.kube.workloads import WorkloadError, call

    try:
        obj = call(api, "GET", f"/api/v1/nodes/{node.name}")
    except WorkloadError:
        return
    with transaction.atomic():
        apply_change(node.cluster, "nodes", "MODIFIED", obj)
