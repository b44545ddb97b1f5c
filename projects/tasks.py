"""Celery tasks: reconcile a cluster's projects after each committed change and every 15 seconds
(so hand edits are repaired within 30), and delete namespaces when someone explicitly asks."""

import logging

from celery import shared_task
from django.core.cache import cache
from django.db import transaction

from clusters.models import Cluster
from portal import spread
from projects import reconciler

log = logging.getLogger(__name__)


def _queued_key(cluster_id):
    return f"projects:reconcile-queued:{cluster_id}"


def request_reconcile(cluster_id):
    """Ask for a reconcile of ``cluster_id`` once the current transaction commits (one queued
    task per cluster; a pass already running sees the dirty flag and goes round again)."""
    def enqueue():
        try:
            cache.set(reconciler.dirty_key(cluster_id), 1, reconciler.DIRTY_SECONDS)
            if cache.add(_queued_key(cluster_id), 1, 60):
                try:
                    reconcile_cluster.delay(cluster_id)
                except Exception:
                    cache.delete(_queued_key(cluster_id))
                    raise
        except Exception as exc:  # noqa: BLE001 - Redis or the broker is down: the change is committed
            log.warning("could not queue a reconcile of cluster %s (%s); the periodic pass will do it", cluster_id, exc)

    transaction.on_commit(enqueue)


@shared_task(ignore_result=True, acks_late=True, time_limit=10 * 60, soft_time_limit=9 * 60)
def reconcile_cluster(cluster_id):
    cache.delete(_queued_key(cluster_id))
    try:
        result = reconciler.reconcile(cluster_id)
    except reconciler.ReconcileBusy as exc:
        log.info("%s; it will go round again", exc)
        return None
    return {"created": len(result.created), "updated": len(result.updated), "deleted": len(result.deleted),
            "errors": sum(map(len, result.errors.values()))}


@shared_task(ignore_result=True)
def reconcile_all_clusters():
    """Every active cluster; projects of clusters that are down show why and wait."""
    for cluster_id in Cluster.objects.exclude(state__in=["pending", "provisioning", "removing"]).values_list("pk", flat=True):
        if cache.add(_queued_key(cluster_id), 1, 60):  # spread over the round (portal.spread)
            reconcile_cluster.apply_async((cluster_id,), countdown=spread.countdown("reconcile", cluster_id, reconcile_all_clusters.name))


@shared_task(ignore_result=True, acks_late=True, time_limit=10 * 60, soft_time_limit=9 * 60)
def delete_project(operation_id, project_id, names):
    """A project deleted with its namespaces: the namespaces in the cluster first, then the rows,
    so a failure leaves the project as it is and the operation failed with the reason."""
    from portal.operations import Progress
    from projects.models import Project

    with Progress(operation_id) as progress:
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            progress.step(100, "the project was already deleted")
            return
        progress.step(10, f"deleting namespaces {', '.join(names)} in the cluster"[:300])
        reconciler.delete_namespaces(project.cluster_id, names)
        with transaction.atomic():
            project.namespaces.filter(name__in=names).delete()
            project.delete()
        progress.step(100, "namespaces and project deleted")
