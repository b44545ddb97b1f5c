"""Event-driven evaluation: the watcher's changes evaluate the rules they may affect at once."""

import logging

from django.dispatch import receiver

from clusters.signals import inventory_changed

log = logging.getLogger(__name__)


@receiver(inventory_changed)
def evaluate_affected_rules(sender, cluster_id, resources, **kwargs):
    from monitoring import evaluate, tasks

    conditions = evaluate.affected_conditions(resources)
    if not conditions or not evaluate.rules_for(cluster_id, conditions).exists():
        return
    try:
        tasks.evaluate_cluster.delay(cluster_id, sorted(conditions))
    except Exception as exc:  # the broker is down: the periodic pass evaluates it
        log.warning("could not queue the evaluation of cluster %s (%s)", cluster_id, exc)
