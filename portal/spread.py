"""Periodic per-cluster work spread over its interval, so that 2,000 clusters never start at once.

Beat fires a round (``check_all_clusters`` every 30 s, ``sync_all_clusters`` every 5 minutes...);
the round queues each cluster's task with a countdown: an offset within the interval taken from a
hash of the task and the cluster.  So the tasks of a round are spread evenly across it, and each
cluster keeps its own slot from one round to the next (it is still done once per interval).
"""

import hashlib

from django.conf import settings


def offset(kind, key, interval):
    """Seconds, in [0, interval), after the start of a round at which ``key``'s ``kind`` task runs;
    the same in every round and every process."""
    digest = hashlib.blake2b(f"{kind}:{key}".encode(), digest_size=8).digest()
    return interval * int.from_bytes(digest, "big") / 2**64


def interval(task):
    """The beat interval of ``task`` (its dotted name) in seconds, from PERIODIC_TASKS; 0 if none."""
    for entry in settings.PERIODIC_TASKS.values():
        if entry["task"] == task:
            return entry["every"].total_seconds()
    return 0.0


def countdown(kind, key, task):
    """The countdown for ``key``'s task in a round of ``task`` (a beat-scheduled dotted name)."""
    return offset(kind, key, interval(task))
