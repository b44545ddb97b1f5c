"""Where a cluster's watches got to (ClusterWatchState): stored within seconds when changes moved
it, at most once a minute when only bookmarks did (every watch gets one about a minute, and 2,000
clusters' bookmarks stored at once were 200 writes a second: bench/scale.py), in one statement."""

import pytest

from clusters.models import Cluster, ClusterWatchState
from clusters.watcher import BOOKMARK_SAVE_INTERVAL, SAVE_INTERVAL, Change, ClusterWatch
from tests.conftest import make_cluster


class Pool:
    """The writers' side of a watch: what it queues, run when the test says."""

    def __init__(self):
        self.offered = []

    def offer(self, cluster_id, work):
        self.offered.append(work)
        return True

    def run(self):
        """Run what was queued besides the changes themselves; how much that was."""
        works = [work for work in self.offered if not isinstance(work, Change)]
        self.offered = []
        for work in works:
            work()
        return len(works)


def _bookmark(watch, version):
    watch._handle(watch.cluster_id, "pods", {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": version}}})


@pytest.mark.django_db(transaction=True)
def test_bookmarks_are_stored_once_a_minute_and_changes_within_seconds():
    cluster = make_cluster("bookmarks")
    pool = Pool()
    watch = ClusterWatch(cluster.pk, None, pool=pool)
    watch._announce_changes = watch._flush_summary = lambda *args: None  # only the stores here
    watch.server, watch.last_saved = "https://example.test:6443", 1000.0

    _bookmark(watch, "10")
    assert watch.tick(1000.0 + SAVE_INTERVAL) is True  # nothing due: it leaves the ticking list
    assert pool.run() == 0
    _bookmark(watch, "11")
    assert watch.tick(1000.0 + BOOKMARK_SAVE_INTERVAL - 1) is True and pool.run() == 0
    assert not ClusterWatchState.objects.exists()
    _bookmark(watch, "12")
    watch.tick(1000.0 + BOOKMARK_SAVE_INTERVAL)
    assert pool.run() == 1
    state = ClusterWatchState.objects.get(cluster=cluster)
    assert state.versions == {"pods": "12"} and state.server == "https://example.test:6443"

    # A change: stored SAVE_INTERVAL after the last store, bookmarks or not.
    saved = 1000.0 + BOOKMARK_SAVE_INTERVAL
    watch._handle(cluster.pk, "pods", {"type": "ADDED", "object": {"metadata": {"uid": "u1", "name": "p", "namespace": "default",
                                                                                "resourceVersion": "13"}}})
    assert watch.tick(saved + SAVE_INTERVAL / 2) is False  # announced, not stored yet: still ticking
    pool.run()
    assert ClusterWatchState.objects.get(cluster=cluster).versions == {"pods": "12"}
    assert watch.tick(saved + SAVE_INTERVAL) is True
    pool.run()
    assert ClusterWatchState.objects.get(cluster=cluster).versions == {"pods": "13"}
    assert ClusterWatchState.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_state_of_a_cluster_deleted_meanwhile_is_not_stored():
    cluster = make_cluster("gone")
    watch = ClusterWatch(cluster.pk, None, pool=Pool())
    watch.server = "https://example.test:6443"
    watch._save({"pods": "5"})
    assert ClusterWatchState.objects.filter(cluster=cluster).exists()
    Cluster.objects.filter(pk=cluster.pk).delete()
    watch._save({"pods": "6"})  # refused by the cluster's key, quietly
    assert not ClusterWatchState.objects.exists()
