"""The live watcher against a real sandbox: changes in the cluster reach the database and a
subscribed websocket client within seconds, without relisting the cluster."""

import asyncio
import contextlib
import json
import logging
import time

import pytest
from asgiref.sync import sync_to_async

from clusters import sync
from clusters.models import Cluster, ClusterMembership, Namespace, Pod
from clusters.watcher import WATCHED, ClusterWatch, writers
from tests.test_websocket import connect

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]


def _setup(sandbox):
    from tests.conftest import make_user

    user = make_user("watcher-owner")
    cluster = Cluster.objects.create(
        name="live", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    ClusterMembership.objects.create(cluster=cluster, user=user, role="cluster-owner")
    return user, cluster


async def wait_until(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await sync_to_async(predicate)():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def next_event(communicator, event, timeout, uid=None):
    """The next ``event`` (about the object ``uid``, when given: the session's sandbox is shared,
    and another test's pods may be going at the same time)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {event} within {timeout}s"
        message = await communicator.receive_json_from(timeout=remaining)
        if message.get("event") == event and (uid is None or message["data"].get("uid") == uid):
            return message


async def test_pod_deleted_in_the_cluster_reaches_database_and_websocket_within_2_seconds(sandbox, kubectl, monkeypatch):
    user, cluster = await sync_to_async(_setup)(sandbox)
    relists = []
    real_sync = sync.sync
    monkeypatch.setattr(sync, "sync", lambda *a, **k: relists.append(1) or real_sync(*a, **k))
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    try:
        await wait_until(lambda: watch.following.is_set() and "pods" in watch.versions)
        communicator, connected, _ = await connect(user)
        assert connected
        await communicator.send_json_to({"action": "subscribe", "group": f"cluster-{cluster.pk}"})
        await communicator.receive_json_from()

        await sync_to_async(kubectl)("create", "deployment", "nginx", "--image=nginx:1.27", "--replicas=2")
        ns = kubectl.namespace
        await wait_until(lambda: Pod.objects.filter(cluster=cluster, namespace__name=ns, phase="Running").count() == 2, timeout=30)
        pod = await sync_to_async(lambda: Pod.objects.filter(cluster=cluster, namespace__name=ns).select_related("workload").first())()
        assert pod.workload is not None and pod.workload.name == "nginx"

        # drain what creation produced, then delete one pod and time the live path
        while not await communicator.receive_nothing(timeout=0.3):
            await communicator.receive_json_from()
        started = time.monotonic()
        await sync_to_async(kubectl)("delete", "pod", pod.name, "--wait=false")
        message = await next_event(communicator, "pod.deleted", timeout=2, uid=pod.uid)
        assert message["data"]["uid"] == pod.uid
        assert not await sync_to_async(Pod.objects.filter(uid=pod.uid).exists)()
        assert time.monotonic() - started < 2
        # the ReplicaSet's replacement arrives too
        await wait_until(lambda: Pod.objects.filter(cluster=cluster, namespace__name=ns, phase="Running").count() == 2, timeout=30)

        await sync_to_async(sandbox.kubectl)("create", "namespace", f"{ns}-new")
        await wait_until(lambda: Namespace.objects.filter(cluster=cluster, name=f"{ns}-new").exists(), timeout=10)
        await sync_to_async(sandbox.kubectl)("delete", "namespace", f"{ns}-new", "--wait=false")
        assert len(relists) == 1  # only the initial list; everything after came from watches
        await communicator.disconnect()
    finally:
        await sync_to_async(watch.stop)(wait=10)
        await sync_to_async(writers().drain)()  # nothing of it written while the tables are emptied


def test_a_watch_error_410_means_relist(sandbox):
    from clusters.watcher import Gone

    user, cluster = _setup(sandbox)
    watch = ClusterWatch(cluster.pk, None)
    with pytest.raises(Gone):
        watch._handle(cluster.pk, "pods", {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}})
    watch._handle(cluster.pk, "pods", {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12345"}}})
    assert watch.versions["pods"] == "12345"
    json.dumps(watch.versions)


async def test_a_watch_is_taken_as_open_after_its_grace_only_if_nothing_it_received_waits():
    """A watch answered and silent for OPEN_GRACE is open.  But a busy event loop runs that timer
    before it reads what the stream received in time (a 410: the API server serves events watches
    from etcd and refuses an expired version just after answering 200): then the first line read
    decides, not the timer."""
    from clusters.h2client import Response

    watch = ClusterWatch(1, None, pool=object())
    refused = Response(None, 1)
    refused.chunks.put_nowait((b'{"type":"ERROR","object":{"code":410}}\n', 40))
    watch._quiet_for_a_while("events", refused)
    assert "events" not in watch.opened
    quiet = Response(None, 3)
    watch._quiet_for_a_while("events", quiet)
    assert watch.opened == {"events"}


async def test_a_stream_failed_after_its_waiter_left_is_not_reported_as_never_retrieved():
    """A watch stopped while waiting for its headers, then its connection closed: the failure set
    on the headers has nobody left to read it, and is not logged as an exception never retrieved
    (a shard letting clusters go logged it by the dozen)."""
    import gc

    from clusters.h2client import Response, StreamError

    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda loop, context: reported.append(context["message"]))
    try:
        response = Response(None, 1)
        response.headers.set_exception(StreamError("the connection is closed (the cluster's watches stopped)"))
        del response
        gc.collect()
        assert reported == []
    finally:
        loop.set_exception_handler(None)


def test_events_watches_run_longer_on_a_shared_connection_only():
    """Events watches (served from etcd, no bookmarks: one ending after a quiet while is refused
    and relisted) run longer than the others, but only where the connection's other streams would
    find it dead (HTTP/2); each length varies so the watches do not all end together."""
    from clusters.watcher import EVENTS_WATCH_LONGER, WATCH_SECONDS, watch_seconds

    usual = {watch_seconds("pods") for _ in range(200)}
    assert min(usual) >= WATCH_SECONDS and max(usual) < WATCH_SECONDS * 5 // 4 and len(usual) > 10
    events = [watch_seconds("events") for _ in range(50)]
    assert min(events) >= WATCH_SECONDS * EVENTS_WATCH_LONGER
    assert all(WATCH_SECONDS <= watch_seconds("events", shared_connection=False) < WATCH_SECONDS * 5 // 4 for _ in range(50))


def test_a_stopped_watchs_queued_list_is_not_run(monkeypatch):
    """A shard that started every cluster before it saw the others queued a list of each, then let
    the others' go: their lists, still queued on the listing threads, are not run."""
    from clusters.watcher import runtime

    lists = []
    monkeypatch.setattr(sync, "sync", lambda *args, **kwargs: lists.append(args))
    watch = ClusterWatch(1, None, pool=object())
    watch.stop()
    runtime().list_soon(watch.relist).result(10)
    assert lists == []


def test_a_list_retried_because_its_cluster_was_busy_goes_ahead_of_those_waiting(monkeypatch):
    """A watch stopped and started again (the shards' members settling) found its earlier list
    still holding the cluster's sync lock; its retry went to the back of 2,000 queued lists and the
    cluster waited 3 minutes.  A retry after SyncBusy is listed first."""
    import threading
    from concurrent.futures import Future

    from clusters.watcher import Listers, runtime

    listers, ran, hold = Listers(1), [], threading.Event()
    listers.submit(hold.wait)  # the one listing thread busy
    waiting = [listers.submit(lambda name=name: ran.append(name)) for name in ("a", "b")]
    retried = listers.submit(lambda: ran.append("retried"), first=True)
    hold.set()
    for future in [*waiting, retried]:
        future.result(10)
    assert ran == ["retried", "a", "b"]

    asked = []

    def list_soon(relist, first=False):
        asked.append(first)
        future = Future()
        if len(asked) == 1:
            future.set_exception(sync.SyncBusy("a sync of this cluster is already running"))
        else:
            future.set_result(None)
        return future

    monkeypatch.setattr(runtime(), "list_soon", list_soon)
    watch = ClusterWatch(1, None, pool=object())
    with pytest.raises(sync.SyncBusy):
        asyncio.run(watch._relist())
    asyncio.run(watch._relist())
    asyncio.run(watch._relist())
    assert asked == [False, True, False]  # the retry first; the next one as usual again


def test_a_change_waits_for_its_writer_without_its_managed_fields(sandbox, monkeypatch):
    """A change is held (queued, or in the cluster's backlog while its writer is full) without
    metadata.managedFields, which nothing reads: a third of a pod's JSON."""
    user, cluster = _setup(sandbox)
    namespace = sandbox.api().get("/api/v1/namespaces/default")  # as the API server sends it
    assert namespace["metadata"]["managedFields"]
    watch = ClusterWatch(cluster.pk, None)
    queued = []
    monkeypatch.setattr(watch, "_submit", queued.append)
    watch._handle(cluster.pk, "namespaces", {"type": "MODIFIED", "object": namespace})
    assert [c.obj["metadata"]["uid"] for c in queued] == [namespace["metadata"]["uid"]]
    assert "managedFields" not in queued[0].obj["metadata"]
    assert watch.versions["namespaces"] == namespace["metadata"]["resourceVersion"]


def _event(namespace, name, reason):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": namespace},
                       "involvedObject": {"kind": "Pod", "name": f"{name}-pod", "namespace": namespace, "apiVersion": "v1"}, "reason": reason,
                       "message": f"{reason} by the test", "type": "Normal", "count": 1, "firstTimestamp": now, "lastTimestamp": now,
                       "source": {"component": "corral-test"}})


@contextlib.contextmanager
def _said_by_the_watcher(monkeypatch):
    """What the watcher says, heard on its own logger (whatever an earlier test, or Celery set up
    in this process, made of the root logger's level and handlers)."""
    said = []
    heard = logging.Handler(logging.INFO)
    heard.emit = lambda record: said.append(record.getMessage())
    logger = logging.getLogger("clusters.watcher")
    level = logger.level
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logging.root.manager, "disable", logging.NOTSET)
    logger.setLevel(logging.INFO)  # (and forgets what the loggers cached of their levels)
    logger.addHandler(heard)
    try:
        yield said
    finally:
        logger.removeHandler(heard)
        logger.setLevel(level)


async def _events_compacted_away(sandbox, kubectl, cluster, events_moved):
    """The cluster synced, two events made, etcd compacted (as the API server does every 5
    minutes), the first event's row removed, and a watch state stored whose versions etcd still
    holds, but the events' from before the compaction (moved at ``events_moved``)."""
    from clusters.models import ClusterEvent, ClusterWatchState

    ns = kubectl.namespace
    before, versions = {}, {}
    await sync_to_async(sync.sync)(cluster.pk, versions=before)
    await sync_to_async(kubectl)("create", "-f", "-", input=_event(ns, "before-the-relist", "Listed"))
    await sync_to_async(kubectl)("create", "-f", "-", input=_event(ns, "also-before-the-relist", "Listed"))
    # A watch from the events' version would start with the first event above, which is gone.
    compacted = await sync_to_async(sandbox.compact_etcd)()
    await sync_to_async(sync.sync)(cluster.pk, versions=versions)
    await sync_to_async(lambda: ClusterEvent.objects.filter(cluster=cluster, name="before-the-relist").delete())()
    assert int(before["events"]) + 1 < compacted <= min(int(v) for v in versions.values())
    versions["events"] = before["events"]
    await sync_to_async(ClusterWatchState.objects.create)(cluster=cluster, server=sandbox.endpoint, versions=versions,
                                                          events_moved=events_moved)
    return compacted


async def test_an_expired_events_watch_relists_the_events_alone(sandbox, kubectl, monkeypatch):
    """A watch resumed from an events resourceVersion etcd no longer holds (compacted) gets 410: the
    events are listed again, alone (not the whole cluster, as for any other resource), and their
    watch goes on from that list: an event made after it arrives live.  The watch starts again
    without waiting for the list's write, even with the cluster's writer busy and its queue full
    (the list's pages waiting in the cluster's backlog): a takeover in a burst expires a thousand
    events watches while its writers' queues are full."""
    import threading

    from django.utils import timezone

    from clusters.kube.inventory import SyncWriter
    from clusters.models import ClusterEvent
    from clusters.watcher import Writers

    user, cluster = await sync_to_async(_setup)(sandbox)
    # Stored as just moved: the API server compacted etcd since (its 5-minute interval can fall
    # just after), so the watch is asked, and refused.
    compacted = await _events_compacted_away(sandbox, kubectl, cluster, timezone.now())

    syncs, event_lists = [], []
    real_sync, real_relisted = sync.sync, SyncWriter.events_relisted
    monkeypatch.setattr(sync, "sync", lambda *a, **k: syncs.append(1) or real_sync(*a, **k))
    monkeypatch.setattr(SyncWriter, "events_relisted", lambda *a, **k: event_lists.append(1) or real_relisted(*a, **k))
    held = threading.Event()
    pool = Writers(count=1, limit=1)
    pool.submit(cluster.pk, lambda: held.wait(30))  # the cluster's writer busy until let go ...
    pool.submit(cluster.pk, lambda: None)  # ... and its queue full
    watch = ClusterWatch(cluster.pk, None, pool=pool)
    with _said_by_the_watcher(monkeypatch) as said:
        watch.start()
        try:
            expired, followed = (f"cluster {cluster.pk}: events watch expired (410); relisting its events",
                                 f"cluster {cluster.pk}: every watch open")
            # (What it said is awaited too: the watcher's thread marks the watch open, then says so.)
            await wait_until(lambda: watch.opened >= set(WATCHED) and int(watch.versions["events"]) >= compacted
                             and followed in said[said.index(expired) if expired in said else len(said):], timeout=20)
            assert watch.resumed and event_lists and not syncs and watch.backlog
            # Followed once the events watch started again from the list, not when its expired one was
            # answered (200, then 410 in the stream: the API server serves events watches from etcd).
            # Its 410 came just after the answer; had the loop been too busy to read it within the
            # grace, the watch would have been taken as open, then said so again after the relist.
            assert followed not in said[:said.index(expired)], said
            assert not await sync_to_async(ClusterEvent.objects.filter(cluster=cluster, name="before-the-relist").exists)()
            held.set()
            await wait_until(lambda: ClusterEvent.objects.filter(cluster=cluster, name="before-the-relist").exists(), timeout=20)
            await sync_to_async(kubectl)("create", "-f", "-", input=_event(kubectl.namespace, "after-the-relist", "Watched"))
            await wait_until(lambda: ClusterEvent.objects.filter(cluster=cluster, name="after-the-relist").exists(), timeout=10)
            assert len(event_lists) == 1 and not syncs
            assert said.count(f"cluster {cluster.pk}: every watch open") == 1
        finally:
            held.set()
            await sync_to_async(watch.stop)(wait=10)
            await sync_to_async(pool.drain)()  # where it got to, stored as it stopped


async def test_events_whose_version_is_older_than_a_compaction_are_listed_without_asking_their_watch(sandbox, kubectl, monkeypatch):
    """A watcher resuming a cluster whose events' version last moved more than the API server's
    compaction interval ago (5 minutes) lists the events at once: a takeover asked a thousand such
    watches first, each refused (410) after waiting behind the other watches' requests.  Nothing
    else is listed, and the events watch goes on from the list; the time of the list is stored."""
    from datetime import timedelta

    from django.utils import timezone

    from clusters.kube.inventory import SyncWriter
    from clusters.models import ClusterEvent, ClusterWatchState
    from clusters.watcher import EVENTS_VERSION_LIFETIME

    user, cluster = await sync_to_async(_setup)(sandbox)
    old = timezone.now() - timedelta(seconds=EVENTS_VERSION_LIFETIME + 60)
    compacted = await _events_compacted_away(sandbox, kubectl, cluster, old)

    syncs, event_lists = [], []
    real_sync, real_relisted = sync.sync, SyncWriter.events_relisted
    monkeypatch.setattr(sync, "sync", lambda *a, **k: syncs.append(1) or real_sync(*a, **k))
    monkeypatch.setattr(SyncWriter, "events_relisted", lambda *a, **k: event_lists.append(1) or real_relisted(*a, **k))
    watch = ClusterWatch(cluster.pk, None)
    with _said_by_the_watcher(monkeypatch) as said:
        watch.start()
        try:
            await wait_until(lambda: watch.opened >= set(WATCHED) and int(watch.versions["events"]) >= compacted, timeout=20)
            await wait_until(lambda: ClusterEvent.objects.filter(cluster=cluster, name="before-the-relist").exists(), timeout=20)
            assert watch.resumed and len(event_lists) == 1 and not syncs
            assert not any("expired (410)" in line for line in said), said
            assert any(line.startswith(f"cluster {cluster.pk}: its events' version moved ") for line in said), said
            await sync_to_async(kubectl)("create", "-f", "-", input=_event(kubectl.namespace, "after-the-list", "Watched"))
            await wait_until(lambda: ClusterEvent.objects.filter(cluster=cluster, name="after-the-list").exists(), timeout=10)
        finally:
            await sync_to_async(watch.stop)(wait=10)
            await sync_to_async(writers().drain)()
    state = await sync_to_async(ClusterWatchState.objects.get)(cluster=cluster)
    assert state.events_moved > old + timedelta(seconds=60) and int(state.versions["events"]) >= compacted
