"""Celery tasks of monitoring: evaluation (after the watcher's changes, and periodic), grouping
flushes and deliveries.  Each is idempotent: it re-reads what it works on."""

import logging

from celery import shared_task
from django.utils import timezone

from monitoring import controlplane, delivery, evaluate, restarts, usage
from portal import spread

log = logging.getLogger(__name__)


@shared_task(ignore_result=True, acks_late=True)
def evaluate_cluster(cluster_id, conditions=None):
    next_due = evaluate.evaluate_cluster(cluster_id, set(conditions) if conditions is not None else None)
    if next_due is not None:
        # A pending alert fires when its for-duration ends, without waiting for the periodic pass.
        delivery._later(evaluate_cluster, (cluster_id, conditions), (next_due - timezone.now()).total_seconds() + 0.05)


@shared_task(ignore_result=True, acks_late=True)
def evaluate_all_clusters():
    evaluate.evaluate_all()
    delivery.due_work()


@shared_task(ignore_result=True, acks_late=True)
def flush_group(group_id):
    delivery.flush(group_id)


@shared_task(ignore_result=True, acks_late=True)
def flush_groups(group_ids):
    """Groups due at the same moment (the periodic pass makes many due at once)."""
    for group_id in group_ids:
        try:
            delivery.flush(group_id)
        except Exception:
            log.exception("alert group %s: flush failed", group_id)


@shared_task(ignore_result=True, acks_late=True)
def deliver(notification_id):
    delivery.attempt(notification_id)


@shared_task(ignore_result=True, acks_late=True)
def collect_all_usage():
    """Queue one collection per active cluster (each its own task: one slow cluster holds up no other)."""
    from clusters.models import Cluster, ClusterState

    # metrics.k8s.io and /livez, /readyz: Kubernetes clusters only (a Swarm has neither).
    for cluster_id in Cluster.objects.kubernetes().filter(state__in=[ClusterState.ACTIVE, ClusterState.UPDATING]).values_list("pk", flat=True):
        countdown = spread.countdown("usage", cluster_id, collect_all_usage.name)  # portal.spread
        collect_usage.apply_async((cluster_id,), countdown=countdown)
        check_control_plane.apply_async((cluster_id,), countdown=countdown)


@shared_task(ignore_result=True, acks_late=True)
def check_control_plane(cluster_id):
    """Ask the cluster's /livez and /readyz (with each usage collection); evaluate at once on a change."""
    from clusters.models import Cluster, ClusterState

    cluster = Cluster.objects.kubernetes().filter(pk=cluster_id, state__in=[ClusterState.ACTIVE, ClusterState.UPDATING]).first()
    if cluster is not None and controlplane.probe(cluster):
        evaluate.evaluate_cluster(cluster_id, evaluate.affected_conditions({"control-plane"}))


@shared_task(ignore_result=True, acks_late=True)
def collect_usage(cluster_id):
    if usage.collect(cluster_id):
        # Usage rules are evaluated on each collection (periodic, as the data is).
        evaluate.evaluate_cluster(cluster_id, evaluate.affected_conditions({"usage"}))


@shared_task(ignore_result=True, acks_late=True)
def rollup_and_prune_usage():
    usage.rollup()
    usage.prune()
    restarts.prune(timezone.now())
