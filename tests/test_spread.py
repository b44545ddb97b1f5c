"""Periodic per-cluster work is spread over its interval (portal.spread): offsets within the
interval, the same for a cluster every round, and 2,000 clusters evenly across it; the beat rounds
queue each cluster's task with its offset as countdown."""

from collections import Counter

import pytest

from portal import spread


def test_offsets_lie_within_the_interval_and_are_the_same_every_time():
    offsets = [spread.offset("health", cluster_id, 30) for cluster_id in range(1, 2001)]
    assert all(0 <= o < 30 for o in offsets)
    assert offsets == [spread.offset("health", cluster_id, 30) for cluster_id in range(1, 2001)]
    # Another kind of task puts the same cluster elsewhere (its health check and resync do not coincide).
    assert sum(spread.offset("sync", c, 30) == o for c, o in zip(range(1, 2001), offsets)) == 0


def test_two_thousand_clusters_are_spread_evenly_over_the_round():
    for kind, interval in (("health", 30), ("sync", 300), ("usage", 30), ("reconcile", 15)):
        buckets = Counter(int(spread.offset(kind, cluster_id, interval) * 30 // interval) for cluster_id in range(1, 2001))
        assert len(buckets) == 30, kind  # every thirtieth of the round has some
        mean = 2000 / 30
        assert max(buckets.values()) <= 1.5 * mean, (kind, max(buckets.values()))
        assert min(buckets.values()) >= 0.5 * mean, (kind, min(buckets.values()))


def test_the_interval_comes_from_the_beat_schedule(settings):
    from datetime import timedelta

    settings.PERIODIC_TASKS = {"x": {"task": "clusters.tasks.check_all_clusters", "every": timedelta(seconds=45)}}
    assert spread.interval("clusters.tasks.check_all_clusters") == 45
    assert spread.interval("no.such.task") == 0
    assert spread.countdown("health", 7, "no.such.task") == 0


@pytest.mark.django_db
def test_rounds_queue_each_cluster_at_its_offset(monkeypatch):
    from django.core.cache import cache

    from clusters import tasks
    from clusters.models import Cluster

    clusters = [Cluster.objects.create(name=f"c{i}", driver="imported", state="active", credentials={"server": "https://127.0.0.1:1", "token": "x"})
                for i in range(20)]
    for kind, round_, task in (("health", tasks.check_all_clusters, tasks.check_cluster), ("sync", tasks.sync_all_clusters, tasks.sync_cluster_quietly)):
        sent = {}
        monkeypatch.setattr(task, "apply_async", lambda args, countdown, sent=sent: sent.__setitem__(args[0], countdown))
        for c in clusters:
            cache.delete(tasks._pending_key(kind, c.pk))
        try:
            round_()
        finally:
            for c in clusters:
                cache.delete(tasks._pending_key(kind, c.pk))
        interval = spread.interval(round_.name)
        assert interval > 0
        assert sent == {c.pk: spread.offset(kind, c.pk, interval) for c in clusters}
        assert len({round(v, 3) for v in sent.values()}) == len(clusters)  # not all at once
