"""The live watcher: its own process (``manage.py watch_clusters``), next to the Celery worker.

One asyncio event loop (a thread of its own) follows every watch of every cluster this process owns:
no thread per watch or per cluster.  A cluster's watches are streams of one HTTP/2 connection, as
client-go's (``clusters.h2client``; sockets and TLS from httpcore's anyio backend, the outbound
policy checked on the socket by ``clusters.proxy.upstream.GuardedBackend``), so 2,000 clusters are
about 2,000 sockets, not 20,000; an API server that only speaks HTTP/1.1 gets a connection per watch
(httpcore).  For a cluster seen
for the first time it lists the inventory once (a full sync, which also yields the resourceVersions),
then follows a watch per resource from there, with bookmarks (``allowWatchBookmarks``).  Where each
watch got to is stored (``ClusterWatchState``) once the changes before it are committed, so a watcher
started again, or another one taking the cluster over, resumes the watches instead of relisting.

The loop only reads and parses; every database write goes through a small pool of writer threads,
one queue each, a cluster always on the same writer so its changes apply in order.  So the database
sees a handful of connections however many clusters are followed.  Each change is emitted on the
cluster's websocket topic after its commit, to those who may view the changed object.  A watch that
expires (410 Gone) makes the cluster relist once (on a small pool of listing threads), or only its
events when theirs expired (they churn fastest, and their rows link to nothing listed with them);
a cluster that stops answering is retried with capped backoff, so nothing piles up while it is down.

Relists write through the cluster's writer too, a page at a time, in order with its watch events;
the writes are guarded (``clusters.kube.store``) so nothing older replaces anything newer.  Writer
queues are bounded: when the database falls behind, a cluster's watches stop reading (their sockets
fill, the API server waits) instead of piling up changes.  When the database cannot be reached (a
restart, a failover), a writer holds its change and tries it again until the database answers (up to
DATABASE_OUTAGE_SECONDS), so nothing seen meanwhile is lost and order is kept.

Several watcher processes share the clusters (``clusters.shards``): each follows those that
rendezvous hashing over the live members gives it.
"""

import asyncio
import collections
import contextlib
import datetime
import hashlib
import http
import itertools
import json
import logging
import queue
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import urlencode, urlsplit

import httpcore
import orjson
from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from clusters import h2client, sync
from clusters.events import FEED_CLUSTERS, cluster_payload
from clusters.kube import store
from clusters.kube.changes import COMPARED_OUT, apply_changes, object_payload  # noqa: F401 - object_payload: where it was
from clusters.kube.inventory import PAGE, RESOURCES, SyncWriter, ensure_uid, event_is_recent, node_fields
from clusters.models import Cluster, ClusterKind, ClusterState, ClusterWatchState, Node, Pod
from clusters.proxy.upstream import GuardedBackend, ssl_context
from clusters.signals import inventory_changed
from portal.events import batched, emit, group_name
from portal.permissions import aggregate_audience

log = logging.getLogger(__name__)
CREDENTIALS = Cluster._meta.get_field("credentials")

WATCHED = ["namespaces", "nodes", "pods", "services", "deployments", "statefulsets", "daemonsets", "jobs", "cronjobs", "events"]
PRUNE_EVERY = 100  # event writes between two trims of a cluster's events to the newest MAX_EVENTS
# How long a watch runs before it starts again from where it got to: WATCH_SECONDS and up to a
# quarter more, at random, so 20,000 watches do not end together.  Its stream is taken as dead
# (the connection closed, every stream on it started again) after that long and 30 s without a
# byte.  Events watches on a connection shared with the cluster's other watches (HTTP/2) run
# EVENTS_WATCH_LONGER times as long: the API server serves them from etcd, without bookmarks, so
# one that ends after a quiet while (a compaction since its last event) is refused and its events
# are listed again.  Ended every few minutes, 2,000 clusters' events were relisted 7 times a
# second, and a takeover's survivor relisted hundreds of its own clusters' events beside the
# orphans'.  A dead connection is still found as soon: by its other streams' read timeouts.
WATCH_SECONDS = 240
EVENTS_WATCH_LONGER = 4
SUMMARY_INTERVAL = 1.0
CHANGES_INTERVAL = 0.25  # how often the resources changed are announced (inventory_changed)
SAVE_INTERVAL = 2.0  # how often where the watches got to is stored, when changes moved it
# ... and when only bookmarks moved it (every watch gets one about a minute): a watcher taking the
# cluster over resumes from a version at most this much older, well within an API server's watch
# cache, and 2,000 clusters' bookmarks are not 200 writes a second.
BOOKMARK_SAVE_INTERVAL = 60.0
ROOM_RECHECK = 5.0  # a cluster held back by a full writer queue looks again at least this often (it is woken sooner)
WRITER_IDLE_SECONDS = 1.0  # a writer with nothing to do for this long closes its database connection
BATCH = 500  # queued items a writer takes at once (a cluster's changes among them written in one transaction)
QUEUE_LIMIT = 1000  # changes waiting per writer; beyond it, the cluster's watches stop reading (back-pressure)
DATABASE_OUTAGE_SECONDS = 600  # how long a writer holds a change while the database is unreachable
OPENING = 64  # watch requests being opened at once (TLS handshakes), so thousands start without timeouts
# Watch requests waiting for their response at once (HTTP/2), and how long one may wait: an API
# server answers a watch once it has set it up, queued by its priority and fairness meanwhile.  A
# takeover resumes a thousand clusters' watches together; let loose at once, with a 10 s wait,
# they timed out and were retried over and over (2,000 clusters: 11,000 retries in 4 minutes).
STARTING = 256
START_TIMEOUT = 60
OPEN_GRACE = 1.0  # a watch answered and not refused (410 in its stream) within this long is open
# The API server compacts etcd every 5 minutes (its --etcd-compaction-interval) to the revision it
# noted 5 minutes before; events watches, served from etcd without bookmarks, keep the version of
# their last change.  One that moved longer ago than this is taken as gone: a watcher resuming the
# cluster lists its events at once, instead of opening a watch that is refused (a takeover asked
# a thousand such watches first, each behind the other watches' requests, then listed).
EVENTS_VERSION_LIFETIME = 300
# A resource the API server does not serve (clusters.kube.discovery) is not watched; every this
# many seconds the watch looks whether a sync found it served since, and relists when it is.
UNSERVED_RECHECK = 60


def watch_seconds(resource, shared_connection=True):
    """A watch's timeoutSeconds: WATCH_SECONDS and up to a quarter more, at random; an events
    watch on a connection it shares with the cluster's other watches (HTTP/2) EVENTS_WATCH_LONGER
    times as long.  On a connection of its own (HTTP/1.1) nothing but its own read timeout finds
    it dead, so it keeps the usual length."""
    seconds = WATCH_SECONDS + random.randrange(WATCH_SECONDS // 4)
    return seconds * EVENTS_WATCH_LONGER if resource == "events" and shared_connection else seconds


class Gone(Exception):
    """The resourceVersion is too old (410): relist."""


class Change:
    """One watch event waiting for its cluster's writer.  Consecutive changes of a cluster are
    written together (``Writers``); called alone, it writes itself."""

    __slots__ = ("watch", "resource", "kind", "obj", "stream")

    def __init__(self, watch, resource, kind, obj, stream=0):
        # ``stream``: which chain of the cluster's nodes watch streams delivered it (ClusterWatch.nodes_stream)
        self.watch, self.resource, self.kind, self.obj, self.stream = watch, resource, kind, obj, stream

    def __call__(self):
        return self.watch._apply_batch([self])


class NotServed(Exception):
    """The API server does not serve the resource (404 on its watch)."""


def unwatched(missing_apis):
    """The watched resources that a sync found missing (not served, or discovery failing)."""
    return {name for m in missing_apis or [] for name in m.get("resources") or []}


class Writers:
    """Threads that apply changes to the database, one queue each; ``submit`` keeps the changes
    of one cluster in order by always using the same writer for it.  A writer takes what waits in
    its queue (up to BATCH items) and writes each cluster's consecutive changes in one transaction
    (``clusters.kube.changes``), other work of a cluster (a relist's page, storing where its
    watches got to) in order between them."""

    def __init__(self, count=None, limit=QUEUE_LIMIT):
        self.queues = [queue.Queue(maxsize=limit) for _ in range(count or settings.WATCHER_WRITERS)]
        # Event-loop futures waiting for room in each queue (back-pressure), woken when its writer
        # takes a batch: a thousand clusters held back do not poll for room.
        self.waiting = [collections.deque() for _ in self.queues]
        self.waiting_lock = threading.Lock()
        for index, q in enumerate(self.queues):
            threading.Thread(target=self._run, args=(q, index), name=f"watch-writer-{index}", daemon=True).start()

    def submit(self, cluster_id, work):
        """Queue ``work`` behind the cluster's earlier changes; waits while the queue is full."""
        self.queues[cluster_id % len(self.queues)].put((cluster_id, work))

    def offer(self, cluster_id, work):
        """Queue ``work`` if there is room at once (the event loop never waits); True if queued."""
        try:
            self.queues[cluster_id % len(self.queues)].put_nowait((cluster_id, work))
            return True
        except queue.Full:
            return False

    def call(self, cluster_id, work):
        """Run ``work`` on the cluster's writer, in order with its changes; returns its result."""
        done, outcome = threading.Event(), {}

        def run():
            try:
                outcome["result"] = work()
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller
                outcome["error"] = exc
            finally:
                done.set()

        self.submit(cluster_id, run)
        done.wait()
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("result")

    def drain(self, timeout=30):
        """Wait until everything submitted so far is written (for tests and benchmarks)."""
        done = [threading.Event() for _ in self.queues]
        for q, event in zip(self.queues, done):
            q.put((None, lambda event=event: (_close_quietly(), event.set())))  # a drained writer holds no connection
        deadline = time.monotonic() + timeout
        return all(event.wait(max(0, deadline - time.monotonic())) for event in done)

    async def room(self, cluster_id, wanted=1):
        """Wait (on the event loop) until the cluster's writer has room for ``wanted`` more items,
        or ROOM_RECHECK seconds.  Waiters are woken first come, first served, only as many as the
        room taken up fits: a thousand clusters held back are not all woken for each batch."""
        index = cluster_id % len(self.queues)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self.waiting_lock:
            self.waiting[index].append((future, max(1, wanted)))
        if not self.queues[index].full():  # room was made before the future was there to wake
            future.cancel()  # the writer skips it
            return
        recheck = loop.call_later(ROOM_RECHECK, _wake, [future])  # (not asyncio.wait_for: a tenth of the loop's time)
        try:
            await future
        finally:
            recheck.cancel()

    def _made_room(self, index):
        q = self.queues[index]
        free = q.maxsize - q.qsize()
        woken = []
        with self.waiting_lock:
            waiting = self.waiting[index]
            while waiting and free > 0:
                future, wanted = waiting.popleft()
                if not future.done():
                    woken.append(future)
                    free -= wanted
        by_loop = {}
        for future in woken:
            by_loop.setdefault(future.get_loop(), []).append(future)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_wake, futures)
            except RuntimeError:
                pass  # that loop is closed

    def _run(self, q, index):
        while True:
            items = [_next_or_let_go(q)]
            while len(items) < BATCH:
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
            if self.waiting[index]:
                self._made_room(index)
            self.work(items)

    @classmethod
    def work(cls, items):
        """Do ``items`` (``(cluster id, work)`` in queue order): each cluster's in its order (clusters
        are independent of each other); work of no cluster (a drain) after everything before it."""
        by_cluster = {}
        for cluster_id, work in items:
            if cluster_id is None:
                cls._clusters(by_cluster)
                by_cluster = {}
                _run_one(work)
            else:
                by_cluster.setdefault(cluster_id, []).append(work)
        cls._clusters(by_cluster)

    @staticmethod
    def _clusters(by_cluster):
        for works in by_cluster.values():
            run = []
            for work in works:
                if isinstance(work, Change) and (not run or run[0].watch is work.watch):
                    run.append(work)
                    continue
                _write_changes(run)
                run = [work] if isinstance(work, Change) else []
                if not run:
                    _run_one(work)
            _write_changes(run)


class Listers:
    """Threads that list clusters (``ClusterWatch.relist``), one after another from one queue:
    settings.WATCHER_LISTERS of them, each reading a whole cluster a page at a time and writing it
    through the cluster's writer.  A lister keeps its database connection while it has work (a catch-up lists clusters back to back)
    and closes it once idle for WRITER_IDLE_SECONDS, as the writers do.

    A list submitted ``first`` goes ahead of those waiting: one retried because another list of
    its cluster held the cluster's sync lock (a watch stopped and started again as the shards'
    members settled) went to the back of 2,000 queued lists, and its cluster waited 3 minutes."""

    def __init__(self, count):
        self.queue = queue.PriorityQueue()
        self.order = itertools.count()  # first come, first served within a priority
        for index in range(count):
            threading.Thread(target=self._run, name=f"watch-list-{index}", daemon=True).start()

    def submit(self, work, first=False):
        future = Future()
        self.queue.put((0 if first else 1, next(self.order), future, work))
        return future

    def _run(self):
        while True:
            _, _, future, work = _next_or_let_go(self.queue)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(exc)


def _wake(futures):
    for future in futures:
        if not future.done():
            future.set_result(None)


def _next_or_let_go(q):
    """The next item of ``q``; a thread that waits longer than WRITER_IDLE_SECONDS for it closes its
    database connection meanwhile (busy writers and listers keep theirs, idle ones hold none)."""
    try:
        return q.get(timeout=WRITER_IDLE_SECONDS)
    except queue.Empty:
        _close_quietly()
        return q.get()


def _run_one(work):
    try:
        _until_the_database_answers(work)
    except Exception:
        log.exception("watcher: could not apply a change (the next resync will)")


def _write_changes(changes):
    """A cluster's consecutive changes in one transaction; should that fail for another reason than
    the database being away, one by one (one odd change must not cost the others)."""
    if not changes:
        return
    watch = changes[0].watch
    try:
        _until_the_database_answers(lambda: watch._apply_batch(changes))
    except Exception:
        if len(changes) == 1:
            log.exception("watcher: could not apply a change (the next resync will)")
            return
        log.warning("watcher: cluster %s: %d changes could not be written together; writing them one by one",
                    watch.cluster_id, len(changes), exc_info=True)
        for change in changes:
            _run_one(change)


def _digest(row):
    """What a node's row says, less its resourceVersion (compared as changes.COMPARED_OUT)."""
    return hash(orjson.dumps({k: v for k, v in row.items() if k not in COMPARED_OUT}, option=orjson.OPT_SORT_KEYS))


def _node_digest(obj):
    try:
        return _digest(store.clean(node_fields(obj)))
    except Exception:  # noqa: BLE001 - an odd node is written (and warned about) the usual way
        return None


def _close_quietly():
    try:
        connection.close()
    except (OperationalError, InterfaceError):
        pass  # a connection the database dropped is closed already


def _until_the_database_answers(work, outage_seconds=None):
    """Run ``work``; while the database cannot be reached, wait (1 s, doubling to 10 s) and run it
    again, for up to ``outage_seconds``: a restart of the database does not lose the change."""
    outage_seconds = DATABASE_OUTAGE_SECONDS if outage_seconds is None else outage_seconds
    started, delay = None, 1.0
    while True:
        close_old_connections()
        try:
            return work()
        except (OperationalError, InterfaceError) as exc:
            _close_quietly()
            now = time.monotonic()
            if started is None:
                started = now
                log.warning("watcher: the database cannot be reached (%s); holding changes until it answers", exc)
            if now - started >= outage_seconds:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


_writers = None
_writers_lock = threading.Lock()


def writers():
    global _writers
    with _writers_lock:
        if _writers is None:
            _writers = Writers()
        return _writers


class Runtime:
    """The process's one event loop (in a thread of its own) and what its watches share: the
    network backend (connections through the outbound policy), the listing threads, TLS contexts by
    credentials, and the clusters with something to announce or store.

    TLS is anyio's (``ssl.SSLObject`` over memory buffers), not asyncio's ``SSLProtocol``, which
    keeps a 256 KiB read buffer per connection: reads here hold only what arrived."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.listers = Listers(settings.WATCHER_LISTERS)
        self.readers = ThreadPoolExecutor(2, thread_name_prefix="watch-read")
        self.dirty = set()
        self.contexts = {}
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), name="watch-loop", daemon=True).start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._setup())
        ready.set()
        self.loop.run_forever()

    async def _setup(self):
        self.opening = asyncio.Semaphore(OPENING)
        self.starting = asyncio.Semaphore(STARTING)
        self.backend = GuardedBackend()
        self.loop.create_task(self._tick())

    def http1(self, ssl):
        """Connections for an API server that does not speak HTTP/2: one per watch."""
        return httpcore.AsyncConnectionPool(ssl_context=ssl or None, http1=True, http2=False, max_connections=len(WATCHED),
                                            keepalive_expiry=60, network_backend=self.backend)

    def ssl_for(self, credentials):
        key = hashlib.sha256(json.dumps(credentials, sort_keys=True).encode()).hexdigest()
        if key not in self.contexts:
            self.contexts[key] = ssl_context(credentials)
        return self.contexts[key]

    def list_soon(self, relist, first=False):
        """Run ``relist`` on a listing thread (``first``: ahead of the lists waiting); a concurrent
        future."""
        return self.listers.submit(lambda: relist(keep_connection=True), first)

    def run(self, coroutine):
        """Start ``coroutine`` on the loop (from any thread); a concurrent future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def _tick(self):
        while True:
            await asyncio.sleep(CHANGES_INTERVAL)
            now = time.monotonic()
            for watch in list(self.dirty):
                try:
                    if watch.tick(now):
                        self.dirty.discard(watch)
                except Exception:
                    log.exception("watcher: cluster %s could not queue its announcements", watch.cluster_id)


_runtime = None
_runtime_lock = threading.Lock()


def runtime():
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


class ClusterWatch:
    """All the watches of one cluster: coroutines on the runtime's loop, writes on its writer."""

    def __init__(self, cluster_id, fingerprint, pool=None):
        self.cluster_id = cluster_id
        self.fingerprint = fingerprint
        self.pool = pool or writers()
        self.stop_event = threading.Event()
        self.following = threading.Event()  # every watch started (after the first list or a resume)
        self.ended = threading.Event()
        self.versions = {}
        self.relist_lock = threading.Lock()
        self.relisting = None
        self.busy = False  # the last relist found the cluster's sync lock held: the next goes first
        self.events_moved = None  # when the events' version last moved (time.time())
        self.resumed = False
        self.future = None
        self.backlog = collections.deque()  # changes waiting for room in the writer's queue, in order
        self.announce_due = False  # changes came since the last announcement (on the loop)
        self.summary_pending = False
        # On the cluster's writer: what the writes changed since the last announcement, and whether
        # the cluster's figures (nodes, pods) moved since the last summary.  A change that only
        # moves a resourceVersion (a node's heartbeat: 20,000 of them at once in a bench's
        # takeover) changes neither: the summary's aggregate queries and alert evaluation's
        # look-up, done for each, tripled a takeover that ran into a wave of them.
        self.written = set()
        self.figures_moved = False
        # On the cluster's writer: each node as the database holds it after a change of the nodes
        # watch's current chain of streams (uid -> (chain, digest of its row)), and the versions of
        # the changes that matched it (a heartbeat: only the resourceVersion moved), stored with
        # where the watches got to rather than one transaction each: 20,000 nodes' heartbeats (kwok
        # every 600 s, a kubelet every 5 minutes) were a transaction per cluster per wave.
        self.nodes_held = {}
        self.node_versions_due = {}
        # (On the loop) counts the nodes watch's starts from a version its own streams did not reach
        # (a resume's, a relist's): such a start may skip versions of a node.
        self.nodes_stream = 0
        self.nodes_reached = None  # the version the nodes watch's own streams reached
        self.unsaved = False  # changes moved where the watches got to since it was stored
        self.bookmarked = False  # bookmarks moved it
        self.last_summary = self.last_saved = 0.0
        self.server = self.endpoint = None
        self.headers, self.ssl = {}, None
        self.h2 = None  # the cluster's HTTP/2 connection (h2client.Connection), its watches' streams
        self.http1 = None  # or, for a server without HTTP/2, a pool of HTTP/1.1 connections
        self.connecting = None
        self.event_writes = 0
        self.unwatched = set()  # resources not served: not watched until a sync finds them served
        self.prepared = None  # (credentials, watch state, missing APIs) when the supervisor read them
        self.opened = set()  # resources whose watch has been answered since the start

    def start(self):
        self.future = runtime().run(self._main())

    def stop(self, wait=0):
        """Stop every watch (their streams are closed); ``wait``: seconds to wait for the end."""
        self.stop_event.set()
        if self.future is not None:
            self.future.cancel()  # cancels the task on the loop, which closes its streams
            if wait:
                self.ended.wait(wait)

    # --- listing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _listing(self, keep_connection):
        """One listing of the cluster at a time.  The thread's database connection is closed after
        it unless ``keep_connection`` (more listings are waiting)."""
        with self.relist_lock:
            close_old_connections()  # one the database dropped meanwhile is not used
            try:
                yield
            finally:
                if not keep_connection:
                    connection.close()

    def relist(self, keep_connection=False):
        """Full sync; refreshes every resource's starting resourceVersion.  Not once the watch is
        stopped: a shard that started every cluster before it saw the others (so queued a list of
        each) lets theirs go at once, and their lists, still queued, kept its own waiting for
        minutes."""
        if self.stop_event.is_set():
            return
        with self._listing(keep_connection):
            versions = {}
            sync.sync(self.cluster_id, versions=versions, apply=lambda work: self.pool.call(self.cluster_id, work),
                      lock_ttl=settings.WATCHER_LEASE_SECONDS)
            self.unwatched = unwatched(Cluster.objects.filter(pk=self.cluster_id).values_list("missing_apis", flat=True).first())
            self.versions.update(versions)
            self.events_moved = time.time()
            self.pool.submit(self.cluster_id, lambda: self._wrote(WATCHED))  # (what a list changed is not told apart)
            self.announce_due = True
            self.unsaved = True
            self._mark()

    async def _relist(self):
        """Relist once however many watches asked for it meanwhile; a relist retried because another
        held the cluster's sync lock goes ahead of the lists waiting."""
        first, self.busy = self.busy, False
        try:
            await self._once("relisting", self.relist, first)
        except sync.SyncBusy:
            self.busy = True
            raise

    async def _relist_events(self):
        """List the events again (their watch expired) and start their watch from that list; a
        whole relist already under way lists them too.  On the loop, through the cluster's own
        connection (no listing thread, no new client or TLS handshake), and the list's write is
        queued behind the changes received so far without waiting for it: a takeover finds most
        events watches expired (the API server keeps no watch cache for events, so they get no
        bookmarks and their version ages), and a thousand of them listed on the listing threads,
        each waiting for its write behind a burst, kept clusters unfollowed for minutes."""
        if self.relisting is not None:
            await asyncio.shield(self.relisting)
            return
        writer = SyncWriter(Cluster(pk=self.cluster_id), apply=self._submit)
        path, token, version = RESOURCES["events"], None, ""
        while True:
            query = {"limit": PAGE, **({"continue": token} if token else {})}
            body = await self._get_json(f"{path}?{urlencode(query)}")
            meta = body.get("metadata") or {}
            writer.page("events", [ensure_uid(path, item) for item in body.get("items") or []])
            version, token = meta.get("resourceVersion", ""), meta.get("continue")
            if not token:
                break
        writer.events_relisted(version)
        self._submit(lambda: self._wrote({"events"}))
        self.versions["events"] = version
        self.events_moved = time.time()
        self.announce_due = True
        self.unsaved = True
        self._mark()
        # Their watch starts now, without waiting for the writer to take the list: a takeover in a
        # burst held a thousand clusters' events unwatched behind the writers' queues.  Its changes
        # queue behind the list, and its reads wait for room as any watch's do.

    async def _once(self, name, listing, first=False):
        """Run ``listing`` on a listing thread unless the one in ``self.<name>`` is still under way,
        and wait for it.  Its outcome is read when it ends too: a watch that stopped meanwhile (the
        cluster handed to another shard) no longer waits for it, and asyncio would log it as never
        retrieved."""
        running = getattr(self, name)
        if running is None:
            running = asyncio.wrap_future(runtime().list_soon(listing, first))
            setattr(self, name, running)
            running.add_done_callback(lambda future: self._ended(name, future))
        await asyncio.shield(running)

    def _ended(self, name, future):
        setattr(self, name, None)
        if not future.cancelled():
            future.exception()

    def _prepare(self):
        """The cluster's credentials and where its watches got to (on a reading thread); the first
        time, what the supervisor read for it with the others it started."""
        if self.prepared is not None:
            (credentials, state, missing), self.prepared = self.prepared, None
            self.unwatched = unwatched(missing)
            return credentials, state
        try:
            cluster = Cluster.objects.only("credentials", "missing_apis").get(pk=self.cluster_id)
            self.unwatched = unwatched(cluster.missing_apis)
            state = ClusterWatchState.objects.filter(cluster_id=self.cluster_id).first()
            return cluster.credentials, state
        finally:
            connection.close()

    def _use(self, credentials):
        self.server = credentials.get("server") or ""
        self.endpoint = self.server.rstrip("/")
        self.headers = [(b"accept", b"application/json")]
        if credentials.get("token"):
            self.headers.append((b"authorization", ("Bearer " + credentials["token"]).encode()))
        self.ssl = runtime().ssl_for(credentials) if self.endpoint.startswith("https:") else None

    async def _main(self):
        loop, rt = asyncio.get_running_loop(), runtime()
        backoff = 1
        try:
            while not self.stop_event.is_set():
                try:
                    credentials, state = await loop.run_in_executor(rt.readers, self._prepare)
                    if not credentials.get("server"):
                        raise ValueError("the cluster has no API server address")
                    await loop.run_in_executor(rt.readers, self._use, credentials)
                    if state is not None and state.server == self.server and all(state.versions.get(r) for r in WATCHED
                                                                                 if r not in self.unwatched):
                        log.info("cluster %s: resuming its watches where they were left", self.cluster_id)
                        self.versions.update(state.versions)
                        self.resumed = True
                        self.events_moved = state.events_moved.timestamp() if state.events_moved else None
                    else:
                        log.info("cluster %s: listing it (no watch to resume)", self.cluster_id)
                        await self._relist()
                    break
                except sync.SyncBusy:
                    await asyncio.sleep(1)
                except Exception as exc:
                    log.warning("cluster %s: initial list failed (%s); retrying in %ss", self.cluster_id, exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30)
            self.connecting = asyncio.Lock()
            tasks = [asyncio.create_task(self._watch_forever(resource)) for resource in WATCHED]
            self.following.set()
            await asyncio.gather(*tasks)
        finally:
            try:
                if self.h2 is not None:
                    await self.h2.close("the cluster's watches stopped")
                if self.http1 is not None:
                    await self.http1.aclose()
            except Exception as exc:  # noqa: BLE001 - closing a broken connection
                log.debug("cluster %s: closing its connections: %s", self.cluster_id, exc)
            if self.unsaved or self.bookmarked:  # a watcher stopping (a handover) leaves where it got to
                self.pool.offer(self.cluster_id, self._saving())
            self.ended.set()  # (after: whoever waits for the end and drains the writers has it stored)

    # --- watching ---------------------------------------------------------------------------

    def _missing_apis(self):
        try:
            return Cluster.objects.filter(pk=self.cluster_id).values_list("missing_apis", flat=True).first()
        finally:
            connection.close()

    async def _wait_until_served(self, resource):
        """Sleep while the resource is not served (no request to it: no hot loop on a 404); when a
        sync finds it served again, relist so its watch starts from a fresh list."""
        loop = asyncio.get_running_loop()
        while resource in self.unwatched and not self.stop_event.is_set():
            await asyncio.sleep(UNSERVED_RECHECK)
            missing = await loop.run_in_executor(runtime().readers, self._missing_apis)
            if resource not in unwatched(missing):
                log.info("cluster %s: %s is served again; relisting", self.cluster_id, resource)
                await self._relist()

    async def _watch_forever(self, resource):
        backoff = 1
        if resource == "events" and self.resumed and resource not in self.unwatched and (
                self.events_moved is None or time.time() - self.events_moved > EVENTS_VERSION_LIFETIME):
            # Resumed with a version older than a compaction: listed first, not asked of a watch.
            log.info("cluster %s: its events' version moved %s; listing them instead of resuming their watch", self.cluster_id,
                     f"{time.time() - self.events_moved:.0f} s ago" if self.events_moved else "at a time not stored")
            try:
                await self._relist_events()
            except Exception as exc:  # noqa: BLE001 - the watch is refused and lists them in turn
                log.warning("cluster %s: listing its events failed (%s); resuming their watch", self.cluster_id, exc)
        while not self.stop_event.is_set():
            try:
                if resource in self.unwatched:
                    await self._wait_until_served(resource)
                    continue
                await self._watch_once(resource)
                backoff = 1
            except NotServed:
                log.info("cluster %s: %s is not served (404); not watched until a sync finds it", self.cluster_id, resource)
                self.unwatched = self.unwatched | {resource}
            except Gone:
                # Taken as open (no 410 within OPEN_GRACE), it was not: it is followed again, and
                # said so, once its watch starts again from the list.
                self.opened.discard(resource)
                # Events churn fastest and expire the most (each list replaces what is kept of
                # them): they are listed again alone.  Any other resource relists the cluster.
                log.info("cluster %s: %s watch expired (410); relisting %s", self.cluster_id, resource,
                         "its events" if resource == "events" else "the cluster")
                try:
                    await (self._relist_events() if resource == "events" else self._relist())
                except Exception as exc:
                    log.warning("cluster %s: relist failed: %s", self.cluster_id, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30)
            except Exception as exc:
                if self.stop_event.is_set():
                    return
                log.info("cluster %s: %s watch interrupted (%s); retrying in %ss", self.cluster_id, resource, str(exc) or type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)

    def _nodes_stream_starts(self):
        """A stream delivers every version of each node in order, and the next starts where it
        ended (its last change or bookmark): one chain.  Started from another version (a resume's,
        a relist's) it may skip some, so what the writer holds of the chain before is not compared
        with its changes (_without_heartbeats)."""
        if self.nodes_reached is None or self.versions.get("nodes") != self.nodes_reached:
            self.nodes_stream += 1

    async def _watch_once(self, resource):
        await self._connection()  # (HTTP/2 or not decides an events watch's length)
        if resource == "nodes":
            self._nodes_stream_starts()
        seconds = watch_seconds(resource, shared_connection=self.http1 is None)
        params = {"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": str(seconds)}
        if self.versions.get(resource):
            params["resourceVersion"] = self.versions[resource]
        path = f"{RESOURCES[resource]}?{urlencode(params)}"
        response, chunks = await self._get(path, seconds + 30)
        confirm = None
        try:
            if response.status == 410:
                raise Gone()
            if response.status == 404:
                raise NotServed()
            if response.status != 200:
                body = bytearray()
                async for chunk in chunks:
                    body += chunk
                    if len(body) >= 300:
                        break
                raise RuntimeError(f"{response.status} {_phrase(response.status)}: {body[:300].decode(errors='replace')}")
            # Answered is not yet followed: a watch served from etcd (events: the API server keeps
            # no watch cache for them) says its version is too old (410) in the stream, just after
            # answering 200.  Followed once a change or a bookmark came, or OPEN_GRACE without that.
            if resource not in self.opened:
                loop = asyncio.get_running_loop()
                confirm = loop.call_later(OPEN_GRACE, loop.call_soon, self._quiet_for_a_while, resource, response)
            buffer = bytearray()
            async for chunk in chunks:
                buffer += chunk
                start = 0
                while (end := buffer.find(b"\n", start)) >= 0:
                    line, start = bytes(buffer[start:end]), end + 1
                    if self.stop_event.is_set():
                        return
                    if line.strip():
                        self._handle(self.cluster_id, resource, orjson.loads(line))
                        if confirm is not None:
                            confirm.cancel()
                            confirm = None
                            self._opened(resource)
                del buffer[:start]
                if self.backlog:
                    await self._make_room()
        finally:
            if confirm is not None:
                confirm.cancel()
            # Read to its end, the connection is kept for the next watch.  Left before its end (an
            # error, a stop): HTTP/2 resets the stream, HTTP/1.1 closes the connection.
            await response.aclose()

    def _quiet_for_a_while(self, resource, response):
        """OPEN_GRACE went by since the watch was answered: it is open, unless what it received
        waits to be read.  A busy event loop runs the grace's timer before the reads of data that
        came in time (a 410 among them): this runs one turn of the loop after the timer, once the
        connection's reader took what had come (the socket's data, read in that same turn, is its
        next step), and the first line read decides if anything came."""
        received = getattr(response, "chunks", None)  # (HTTP/2; an HTTP/1.1 body waits in its socket)
        if received is not None and not received.empty():
            return
        self._opened(resource)

    def _opened(self, resource):
        if resource in self.opened:
            return  # (its grace ended before its first line)
        self.opened.add(resource)
        if self.opened >= set(WATCHED) - self.unwatched:  # from now on no change of the cluster is missed
            log.info("cluster %s: every watch open", self.cluster_id)

    async def _connection(self):
        """The cluster's HTTP/2 connection (opened once for all its watches, again after it broke);
        None when its API server speaks only HTTP/1.1 (then ``self.http1``)."""
        rt = runtime()
        async with self.connecting:
            if self.http1 is not None:
                return None
            if self.h2 is not None and self.h2.usable:
                return self.h2
            connection = h2client.Connection(self.endpoint, self.ssl, rt.backend, settings.KUBE_REQUEST_TIMEOUT)
            try:
                async with rt.opening:
                    await connection.open()
            except h2client.NotHTTP2 as exc:
                log.info("cluster %s: its API server does not speak HTTP/2 (%s): a connection per watch", self.cluster_id, exc)
                self.http1 = rt.http1(self.ssl)
                return None
            self.h2 = connection
            return connection

    async def _get(self, path, read_timeout):
        """GET ``path`` of the cluster's API through its connection (a stream of its HTTP/2
        connection, or an HTTP/1.1 connection of its pool): the response, and its body as it
        arrives."""
        rt = runtime()
        connection = await self._connection()
        if connection is not None:
            async with rt.starting:
                response = await connection.get(path, self.headers, timeout=START_TIMEOUT)
            return response, response.iter_chunks(read_timeout)
        timeout = {"connect": settings.KUBE_REQUEST_TIMEOUT, "write": settings.KUBE_REQUEST_TIMEOUT, "pool": None, "read": read_timeout}
        host = [(b"host", urlsplit(self.endpoint).netloc.encode())]
        request = httpcore.Request("GET", self.endpoint + path, headers=host + self.headers, extensions={"timeout": timeout})
        async with rt.opening:
            response = await self.http1.handle_async_request(request)
        return response, response.aiter_stream()

    async def _get_json(self, path):
        """One GET of the cluster's API: the body, parsed; an answer other than 200 raised."""
        response, chunks = await self._get(path, settings.KUBE_REQUEST_TIMEOUT * 3)
        body = bytearray()
        try:
            async for chunk in chunks:
                body += chunk
        finally:
            await response.aclose()
        if response.status != 200:
            raise RuntimeError(f"{response.status} {_phrase(response.status)}: {body[:300].decode(errors='replace')}")
        return orjson.loads(body)

    def _handle(self, cluster_id, resource, event):
        """Take one watch event: errors and bookmarks here, changes to the cluster's writer."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise RuntimeError(obj.get("message", "watch error"))
        meta = obj.get("metadata") or {}
        # Read by nothing here: a third of a pod's JSON and more of its memory, held while the
        # change waits for its writer (a burst in 2,000 clusters at once holds thousands).
        meta.pop("managedFields", None)
        version = meta.get("resourceVersion")
        if resource == "events" and kind in ("ADDED", "MODIFIED") and not event_is_recent(obj):
            pass  # outside the window Corral keeps
        elif kind != "BOOKMARK":
            self._submit(Change(self, resource, kind, obj, self.nodes_stream if resource == "nodes" else 0))
            self.announce_due = True
            if resource in ("pods", "nodes"):
                self.summary_pending = True
        if version:
            self.versions[resource] = version
            if resource == "nodes":
                self.nodes_reached = version
            if resource == "events":
                self.events_moved = time.time()
            if kind == "BOOKMARK":
                self.bookmarked = True
            else:
                self.unsaved = True
        self._mark()

    def _submit(self, work):
        if self.backlog or not self.pool.offer(self.cluster_id, work):
            self.backlog.append(work)

    async def _make_room(self):
        """Back-pressure: hand the waiting changes to the writer in order, reading nothing meanwhile
        (woken when the writer takes a batch, not polling: a takeover at 2,000 clusters held a
        thousand back, and their 50 ms polls were most of the event loop's time)."""
        while self.backlog:
            if self.pool.offer(self.cluster_id, self.backlog[0]):
                self.backlog.popleft()
            else:
                await self.pool.room(self.cluster_id, len(self.backlog))

    def _mark(self):
        runtime().dirty.add(self)

    def tick(self, now):
        """Queue what is due (on the loop, every CHANGES_INTERVAL); True when nothing is left to do."""
        if self.stop_event.is_set():
            return True  # stopped: where its watches got to is stored as they end, nothing else is due
        # What waits for room is handed over here too, not only by the next line a watch reads: a
        # relist's pages, queued when the writer was full, waited for a change that a quiet
        # cluster may not send for minutes.  (In order: always the first waiting, as _make_room.)
        while self.backlog and self.pool.offer(self.cluster_id, self.backlog[0]):
            self.backlog.popleft()
        if self.backlog:
            return False  # after the changes themselves
        if self.announce_due and self.pool.offer(self.cluster_id, self._announce_changes):
            self.announce_due = False
        if self.summary_pending and now - self.last_summary >= SUMMARY_INTERVAL:
            if self.pool.offer(self.cluster_id, self._flush_summary):
                self.summary_pending, self.last_summary = False, now
        if ((self.unsaved and now - self.last_saved >= SAVE_INTERVAL)
                or (self.bookmarked and now - self.last_saved >= BOOKMARK_SAVE_INTERVAL)):
            # Queued behind the changes received so far: stored once they are committed.
            if self.pool.offer(self.cluster_id, self._saving()):
                self.unsaved = self.bookmarked = False
                self.last_saved = now
        # Moved only by bookmarks, it leaves the ticking list: its next bookmark brings it back.
        return not (self.announce_due or self.summary_pending or self.unsaved)

    def _saving(self):
        """Storing where the watches got to now, as work for the cluster's writer."""
        versions, moved = dict(self.versions), self.events_moved
        return lambda: self._save(versions, moved)

    def _save(self, versions, events_moved=None):
        """Store where the watches got to (and when the events' version last moved: ``time.time()``):
        one upsert (a deleted cluster's is refused by its key)."""
        if self.server is None:
            return
        if self.node_versions_due:
            due, self.node_versions_due = self.node_versions_due, {}
            store.refresh_versions(Node, Cluster(pk=self.cluster_id), due)  # (never to an older version)
        moved = datetime.datetime.fromtimestamp(events_moved, datetime.UTC) if events_moved else None
        try:
            ClusterWatchState.objects.bulk_create(
                [ClusterWatchState(cluster_id=self.cluster_id, server=self.server, versions=versions, updated=timezone.now(),
                                   events_moved=moved)],
                update_conflicts=True, unique_fields=["cluster"], update_fields=["server", "versions", "updated", "events_moved"])
        except IntegrityError:
            pass  # the cluster was deleted meanwhile

    def _apply(self, resource, kind, obj):
        """Write one change (as the writer writes a batch of one)."""
        self._apply_batch([Change(self, resource, kind, obj)])

    def _without_heartbeats(self, changes):
        """``changes`` less the nodes' changes that only moved a resourceVersion since the last
        change of the same chain of streams the database holds (their versions noted, stored with the next
        save): no transaction for a wave of heartbeats.  Exact: the stream delivers every version
        of a node in order, so the row stored is that of the change compared with, or newer."""
        if not self.nodes_held:
            return changes
        kept, touched = [], set()
        for change in changes:
            if change.resource == "nodes" and change.kind == "MODIFIED":
                meta = change.obj.get("metadata") or {}
                uid = meta.get("uid", "")
                held = self.nodes_held.get(uid)
                if uid not in touched and held is not None and held[0] == change.stream and _node_digest(change.obj) == held[1]:
                    self.node_versions_due[uid] = meta.get("resourceVersion", "")
                    continue
                touched.add(uid)  # a later change of it in the batch is compared with this one's write: written too
            kept.append(change)
        return kept

    def _apply_batch(self, changes):
        """Write consecutive changes of this cluster in one transaction under its inventory lock;
        their live events leave together once it commits."""
        changes = self._without_heartbeats(changes)
        if not changes:
            return
        # The writes need only the cluster's id: no read of its row (its existence is checked with
        # the lock, in one round trip; a change path's query less for each cluster's batch).
        cluster = Cluster(pk=self.cluster_id)
        batch = [(c.resource, c.kind, c.obj) for c in changes]
        streams = {(c.obj.get("metadata") or {}).get("uid", ""): c.stream for c in changes if c.resource == "nodes"}
        # First without a savepoint around each table's write (a third of the round trips of a
        # small batch); should the database refuse a row, again with them, so the rows it refuses
        # are left out with a warning on the cluster's page and the others are stored.
        try:
            for careful in (False, True):
                try:
                    with transaction.atomic(), batched():
                        if not store.lock_inventory_if_there(cluster.pk):
                            return  # deleted meanwhile
                        changed, settled = set(), {}
                        written = apply_changes(cluster, batch, careful=careful, changed=changed, settled=settled)
                    break
                except (OperationalError, InterfaceError):
                    raise  # the database is away: the writer waits for it
                except DatabaseError:
                    if careful:
                        raise
        except BaseException:
            self.nodes_held.clear()  # what the database holds is not known: every node compared again
            raise
        for c in changes:
            if c.resource == "nodes" and c.kind == "DELETED":
                uid = (c.obj.get("metadata") or {}).get("uid", "")
                self.nodes_held.pop(uid, None)
                self.node_versions_due.pop(uid, None)
        for uid, row in settled.items():
            self.nodes_held[uid] = (streams.get(uid, 0), _digest(row))
            self.node_versions_due.pop(uid, None)
        self._wrote(changed)
        if written:
            before, self.event_writes = self.event_writes, self.event_writes + written
            if before // PRUNE_EVERY != self.event_writes // PRUNE_EVERY:
                store.trim_events(cluster)

    def _wrote(self, resources):
        """On the cluster's writer: ``resources`` had rows written or deleted."""
        if resources:
            self.written.update(resources)
            if not self.figures_moved and ("pods" in resources or "nodes" in resources):
                self.figures_moved = True

    def _announce_changes(self):
        """Tell whoever follows (alert evaluation) which resources had rows written or deleted
        since the last time; runs on the cluster's writer, so everything changed before is
        committed."""
        written, self.written = self.written, set()
        if written:
            inventory_changed.send(sender=Cluster, cluster_id=self.cluster_id, resources=frozenset(written))

    def _flush_summary(self):
        """Tell the dashboard the cluster's figures changed (at most once a second), if the
        writes since the last time moved them."""
        if not self.figures_moved:
            return
        self.figures_moved = False
        cluster = Cluster.objects.with_summary().defer("credentials").filter(pk=self.cluster_id).first()
        if cluster is None:
            return
        nodes = cluster_payload(cluster) | {
            "nodes_ready": cluster.nodes_ready, "nodes_total": cluster.nodes_total,
            "cpu_allocatable_m": cluster.cpu_allocatable_m, "memory_allocatable_bytes": cluster.memory_allocatable_bytes,
        }
        everything = nodes | {
            "pods": cluster.pods_total, "cpu_requested_m": cluster.cpu_requested_m, "memory_requested_bytes": cluster.memory_requested_bytes,
        }
        # Figures summed over pods only for those who see every pod of the cluster; node figures
        # for those who see every node; nothing for a project member.
        all_pods = aggregate_audience("cluster", cluster.pk, Node, Pod)
        all_nodes = aggregate_audience("cluster", cluster.pk, Node) - all_pods
        topics = (group_name("cluster", cluster.pk), FEED_CLUSTERS)
        with transaction.atomic():
            emit("cluster.summary", everything, all_pods, *topics)
            if all_nodes:
                emit("cluster.summary", nodes, all_nodes, *topics)


def _phrase(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def SwarmWatch(cluster_id, fingerprint):  # noqa: N802 - a class, imported late (it imports this module)
    from clusters.swarm.watcher import SwarmWatch as watch

    return watch(cluster_id, fingerprint)


def _fingerprint(kind, creds):
    if kind == ClusterKind.SWARM:
        return ("swarm", creds.get("endpoint"), creds.get("tls_cert"), creds.get("tls_ca"))
    return (creds.get("server"), creds.get("token"), creds.get("client_cert"))


class Supervisor:
    """Keeps one ClusterWatch per monitored cluster this process owns (``clusters.shards``: all of
    them when it is the only watcher), following clusters as they come, go and move.  A change of
    the live watchers (one ended, one joined) wakes it at once instead of at its next poll."""

    def __init__(self, poll_seconds=5, membership=None):
        self.poll_seconds = poll_seconds
        self.membership = membership
        self.watches = {}
        self.opened = {}  # cluster id -> (its sealed credentials, opened)
        self.stop_event = threading.Event()
        self.wake = threading.Event()

    def reconcile(self):
        close_old_connections()
        # Credentials are read sealed and opened only when they changed: a poll of 2,000 clusters
        # does not decrypt 2,000 of them.
        # Rows, not models: a poll every few seconds of 2,000 clusters built 2,000 models (7% of
        # a takeover's time).
        rows = Cluster.objects.filter(state__in=[ClusterState.ACTIVE, ClusterState.UPDATING, ClusterState.UNAVAILABLE]).values_list(
            "pk", "kind", "missing_apis", Cast("credentials", TextField()))
        monitored, opened = {}, {}
        for pk, kind, missing, sealed in rows:
            if self.membership is not None and not self.membership.owns(pk):
                continue
            known, credentials = self.opened.get(pk, (None, None))
            if known != sealed:
                credentials = CREDENTIALS.from_db_value(sealed, None, connection)
            opened[pk] = (sealed, credentials)
            monitored[pk] = (kind, missing, credentials)
        self.opened = opened
        wanted = {pk: _fingerprint(kind, credentials) for pk, (kind, _, credentials) in monitored.items()}
        for cluster_id, watch in list(self.watches.items()):
            if wanted.get(cluster_id) != watch.fingerprint:
                watch.stop()
                del self.watches[cluster_id]
        new = [pk for pk in wanted if pk not in self.watches]
        # Where the new clusters' watches got to, in one query (a takeover starts hundreds at once).
        states = {s.cluster_id: s for s in ClusterWatchState.objects.filter(cluster_id__in=new)} if new else {}
        for cluster_id in new:
            fingerprint = wanted[cluster_id]
            if fingerprint[0] == "swarm":
                watch = SwarmWatch(cluster_id, fingerprint)
            else:
                watch = ClusterWatch(cluster_id, fingerprint)
                _, missing, credentials = monitored[cluster_id]
                watch.prepared = (credentials, states.get(cluster_id), missing)
            watch.start()
            self.watches[cluster_id] = watch

    def run(self):
        if self.membership is not None:
            self.membership.start(on_change=self.wake.set)
        while not self.stop_event.is_set():
            self.wake.clear()  # before reading: a change of members from now on wakes the next round
            try:
                self.reconcile()
            except Exception:
                log.exception("watcher: could not read the clusters to watch")
            self.wake.wait(self.poll_seconds)
        for watch in self.watches.values():
            watch.stop()
        for watch in self.watches.values():
            watch.stop(wait=5)
        writers().drain(timeout=10)  # where each watch got to is stored before the next owner reads it
        if self.membership is not None:
            self.membership.leave()

    def stop(self):
        self.stop_event.set()
        self.wake.set()
