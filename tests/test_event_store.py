"""Events in the inventory: a recent window, Warning and Normal, one row per event with its count,
written through the guarded store so a list never removes an event a watch wrote after it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from clusters.kube import store
from clusters.kube.inventory import RESOURCES, SyncWriter, apply_change, write
from clusters.models import Cluster, ClusterEvent

pytestmark = pytest.mark.django_db


def _event(uid, rv, *, ago=timedelta(minutes=1), type="Normal", count=1, reason="Pulled"):
    when = (timezone.now() - ago).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"name": f"ev-{uid}", "uid": uid, "namespace": "ns", "resourceVersion": str(rv)}, "type": type,
            "reason": reason, "message": "m", "count": count, "lastTimestamp": when, "firstTimestamp": when,
            "involvedObject": {"kind": "Pod", "name": "p"}}


@pytest.fixture
def cluster():
    cluster = Cluster.objects.create(name="events", driver="imported", state="active")
    data = {name: [] for name in RESOURCES}
    data["namespaces"] = [{"metadata": {"name": "ns", "uid": "u-ns", "resourceVersion": "1"}}]
    write(cluster, data)
    return cluster


def test_a_sync_keeps_warning_and_normal_events_of_the_last_hour(cluster):
    data = {name: [] for name in RESOURCES}
    data["namespaces"] = [{"metadata": {"name": "ns", "uid": "u-ns", "resourceVersion": "1"}}]
    data["events"] = [_event("new-normal", 10), _event("new-warning", 11, type="Warning", reason="FailedCreate"),
                      _event("old", 12, ago=timedelta(hours=2), type="Warning")]
    write(cluster, data)
    assert set(ClusterEvent.objects.filter(cluster=cluster).values_list("uid", flat=True)) == {"new-normal", "new-warning"}


def test_a_repeated_event_is_one_row_whose_count_follows(cluster):
    apply_change(cluster, "events", "ADDED", _event("again", 20, count=1))
    apply_change(cluster, "events", "MODIFIED", _event("again", 21, count=4))
    apply_change(cluster, "events", "MODIFIED", _event("again", 19, count=3))  # older: ignored
    rows = ClusterEvent.objects.filter(cluster=cluster, uid="again")
    assert rows.count() == 1 and rows.get().count == 4


def test_a_list_does_not_remove_an_event_a_watch_wrote_after_it(cluster):
    apply_change(cluster, "events", "ADDED", _event("stale", 40))
    writer = SyncWriter(cluster)
    apply_change(cluster, "events", "ADDED", _event("from-watch", 200))  # newer than the list below
    writer.page("events", [_event("listed", 50)])
    writer.end("events", {"listed"}, "100")
    kept = set(ClusterEvent.objects.filter(cluster=cluster).values_list("uid", flat=True))
    assert kept == {"listed", "from-watch"}  # "stale" (40, not in the list at 100) is proven gone


def test_trim_keeps_the_newest_events(cluster):
    for i in range(8):
        apply_change(cluster, "events", "ADDED", _event(f"e{i}", 100 + i, ago=timedelta(minutes=30 - i)))
    store.trim_events(cluster, keep=3)
    assert set(ClusterEvent.objects.filter(cluster=cluster).values_list("uid", flat=True)) == {"e5", "e6", "e7"}


def test_a_relisted_events_write_tried_again_still_writes_the_list(cluster, monkeypatch):
    """The watcher's writer runs a piece of work again once the database answers: the second time,
    the relisted events are all still there to write, and no stored event is taken for gone."""
    from django.db import OperationalError

    apply_change(cluster, "events", "ADDED", _event("stored", 40))
    real_upsert, failures = store.upsert, []

    def upsert_once_away(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise OperationalError("the database went away")
        return real_upsert(*args, **kwargs)

    def apply(work):
        try:
            work()
        except OperationalError:
            work()  # as clusters.watcher's writer does once the database answers again

    monkeypatch.setattr(store, "upsert", upsert_once_away)
    writer = SyncWriter(cluster, apply)
    writer.page("events", [_event("stored", 40), _event("new", 60)])
    writer.events_relisted("100")
    assert failures
    assert set(ClusterEvent.objects.filter(cluster=cluster).values_list("uid", flat=True)) == {"stored", "new"}
