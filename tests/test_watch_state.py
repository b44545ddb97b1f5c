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


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_moves_no_figures_and_is_told_to_no_one(monkeypatch):
    """A node's heartbeat (only its resourceVersion moved: kwok's come for every node at once, so
    a bench's 2,000 clusters got 20,000 in seconds) refreshes the stored version, but neither
    recomputes the cluster's figures for the dashboard nor asks alert evaluation; a change of
    what Corral keeps of the node does both."""
    from clusters import watcher
    from clusters.models import Node
    from clusters.signals import inventory_changed

    cluster = make_cluster("heartbeat")
    watch = ClusterWatch(cluster.pk, None, pool=Pool())
    watch.server = "https://example.test:6443"
    monkeypatch.setattr(watch, "_mark", lambda: None)  # ticked by the test alone, not by the runtime's loop too
    told, summaries = [], []
    monkeypatch.setattr(watcher, "emit", lambda name, data, *args: summaries.append(data["nodes_total"]))

    def listener(sender, cluster_id, resources, **kwargs):
        told.append(set(resources))
    inventory_changed.connect(listener)

    def node(version, ready):
        return {"metadata": {"name": "n1", "uid": "n-1", "resourceVersion": version},
                "status": {"conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": f"2026-11-24T10:00:{version}Z"}]}}

    def receive(kind, obj, now):
        watch._handle(cluster.pk, "nodes", {"type": kind, "object": obj})
        works, watch.pool.offered = watch.pool.offered, []
        for work in works:  # the changes, then (in order behind them) what they made due
            work()
        watch.tick(now)
        watch.pool.run()

    try:
        receive("ADDED", node("10", "True"), 100.0)
        assert told == [{"nodes"}] and summaries == [1, 1]  # (those who see every pod, and every node)
        told.clear(), summaries.clear()
        receive("MODIFIED", node("11", "True"), 200.0)  # a heartbeat
        assert Node.objects.get(cluster=cluster).resource_version == "11"
        assert told == [] and summaries == []
        receive("MODIFIED", node("12", "False"), 300.0)  # no longer ready
        assert told == [{"nodes"}] and summaries
    finally:
        inventory_changed.disconnect(listener)
