"""The live watcher: its own process (``manage.py watch_clusters``), next to the Celery worker.

One asyncio event loop (a thread of its own) follows every watch of every cluster this process owns,
streaming over one shared aiohttp session: no thread per watch or per cluster.  For a cluster seen
for the first time it lists the inventory once (a full sync, which also yields the resourceVersions),
then follows a watch per resource from there, with bookmarks (``allowWatchBookmarks``).  Where each
watch got to is stored (``ClusterWatchState``) once the changes before it are committed, so a watcher
started again, or another one taking the cluster over, resumes the watches instead of relisting.

The loop only reads and parses; every database write goes through a small pool of writer threads,
one queue each, a cluster always on the same writer so its changes apply in order.  So the database
sees a handful of connections however many clusters are followed.  Each change is emitted on the
cluster's websocket topic after its commit, to those who may view the changed object.  A watch that
expires (410 Gone) makes the cluster relist once (on a small pool of listing threads); a cluster that
stops answering is retried with capped backoff, so nothing piles up while it is down.

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
import hashlib
import json
import logging
import queue
import threading
import time
from asyncio import selector_events, sslproto
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import orjson
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.utils import timezone

from clusters import sync
from clusters.events import FEED_CLUSTERS, cluster_payload
from clusters.explain import event_payload, workload_of
from clusters.kube import store
from clusters.kube.inventory import MODELS, RESOURCES, apply_change, event_is_recent
from clusters.models import Cluster, ClusterState, ClusterWatchState, Node, Pod
from clusters.proxy.upstream import GuardedConnector, ssl_context
from clusters.signals import inventory_changed
from portal.events import emit, group_name
from portal.permissions import aggregate_audience

log = logging.getLogger(__name__)

WATCHED = ["namespaces", "nodes", "pods", "services", "deployments", "statefulsets", "daemonsets", "jobs", "cronjobs", "events"]
PRUNE_EVERY = 100  # event writes between two trims of a cluster's events to the newest MAX_EVENTS
WATCH_SECONDS = 240
SUMMARY_INTERVAL = 1.0
CHANGES_INTERVAL = 0.25  # how often the resources changed are announced (inventory_changed)
SAVE_INTERVAL = 2.0  # how often where the watches got to is stored
WRITERS = 4
QUEUE_LIMIT = 1000  # changes waiting per writer; beyond it, the cluster's watches stop reading (back-pressure)
DATABASE_OUTAGE_SECONDS = 600  # how long a writer holds a change while the database is unreachable
LISTERS = 4  # full relists at once: each reads a whole cluster (a page at a time) and writes through the writers
OPENING = 64  # watch requests being opened at once (TLS handshakes), so thousands start without timeouts
RELISTS = threading.BoundedSemaphore(LISTERS)
# A resource the API server does not serve (clusters.kube.discovery) is not watched; every this
# many seconds the watch looks whether a sync found it served since, and relists when it is.
UNSERVED_RECHECK = 60


class Gone(Exception):
    """The resourceVersion is too old (410): relist."""


class NotServed(Exception):
    """The API server does not serve the resource (404 on its watch)."""


def unwatched(missing_apis):
    """The watched resources that a sync found missing (not served, or discovery failing)."""
    return {name for m in missing_apis or [] for name in m.get("resources") or []}


class Writers:
    """Threads that apply changes to the database, one queue each; ``submit`` keeps the changes
    of one cluster in order by always using the same writer for it."""

    def __init__(self, count=WRITERS, limit=QUEUE_LIMIT):
        self.queues = [queue.Queue(maxsize=limit) for _ in range(count)]
        for index, q in enumerate(self.queues):
            threading.Thread(target=self._run, args=(q,), name=f"watch-writer-{index}", daemon=True).start()

    def submit(self, cluster_id, work):
        """Queue ``work`` behind the cluster's earlier changes; waits while the queue is full."""
        self.queues[cluster_id % len(self.queues)].put(work)

    def offer(self, cluster_id, work):
        """Queue ``work`` if there is room at once (the event loop never waits); True if queued."""
        try:
            self.queues[cluster_id % len(self.queues)].put_nowait(work)
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
            q.put(event.set)
        deadline = time.monotonic() + timeout
        return all(event.wait(max(0, deadline - time.monotonic())) for event in done)

    @staticmethod
    def _run(q):
        while True:
            work = q.get()
            try:
                _until_the_database_answers(work)
            except Exception:
                log.exception("watcher: could not apply a change (the next resync will)")
            finally:
                if q.empty():
                    _close_quietly()  # idle writers hold no database connection


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


class _SmallBufferTLS(sslproto.SSLProtocol):
    # asyncio gives every TLS connection a 256 KiB read buffer: 2.5 MiB a cluster for its ten
    # watches.  A TLS record holds at most 16 KiB, so reading 32 KiB at a time loses nothing.
    max_size = 32 * 1024


class _WatchLoop(asyncio.SelectorEventLoop):
    """The event loop of the watches: asyncio's, with smaller TLS read buffers (as
    ``selector_events.BaseSelectorEventLoop._make_ssl_transport``, with the protocol class above)."""

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *, server_side=False, server_hostname=None,
                            extra=None, server=None, ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        ssl_protocol = _SmallBufferTLS(self, protocol, sslcontext, waiter, server_side, server_hostname,
                                       ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout)
        selector_events._SelectorSocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport


class Runtime:
    """The process's one event loop (in a thread of its own) and what its watches share: one HTTP
    session (connections through the outbound policy), the listing threads, TLS contexts by
    credentials, and the clusters with something to announce or store."""

    def __init__(self):
        self.loop = _WatchLoop()
        self.listers = ThreadPoolExecutor(LISTERS, thread_name_prefix="watch-list")
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
        self.session = aiohttp.ClientSession(
            connector=GuardedConnector(limit=0, limit_per_host=0, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=None, connect=settings.KUBE_REQUEST_TIMEOUT),
            skip_auto_headers=("User-Agent",),
        )
        self.loop.create_task(self._tick())

    def ssl_for(self, credentials):
        key = hashlib.sha256(json.dumps(credentials, sort_keys=True).encode()).hexdigest()
        if key not in self.contexts:
            self.contexts[key] = ssl_context(credentials)
        return self.contexts[key]

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


def object_payload(resource, instance):
    data = {"id": instance.pk, "uid": instance.uid, "name": instance.name}
    fields = ("namespace_id", "workload_id", "phase", "ready", "restarts", "node_name", "kind", "desired_replicas", "ready_replicas")
    for field in fields:
        if hasattr(instance, field):
            data[field] = getattr(instance, field)
    if resource == "pods":
        data["workload"] = instance.workload_id
    return data


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
        self.resumed = False
        self.future = None
        self.backlog = collections.deque()  # changes waiting for room in the writer's queue, in order
        self.changed = set()
        self.summary_pending = False
        self.unsaved = False
        self.last_summary = self.last_saved = 0.0
        self.server = self.endpoint = None
        self.headers, self.ssl = {}, True
        self.event_writes = 0
        self.unwatched = set()  # resources not served: not watched until a sync finds them served

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

    def relist(self):
        """Full sync; refreshes every resource's starting resourceVersion."""
        with self.relist_lock, RELISTS:
            try:
                versions = {}
                sync.sync(self.cluster_id, versions=versions, apply=lambda work: self.pool.call(self.cluster_id, work))
                self.unwatched = unwatched(Cluster.objects.filter(pk=self.cluster_id).values_list("missing_apis", flat=True).first())
                self.versions.update(versions)
                self.changed.update(WATCHED)
                self.unsaved = True
                self._mark()
            finally:
                connection.close()  # a listing thread keeps no database connection between relists

    async def _relist(self):
        """Relist once however many watches asked for it meanwhile."""
        if self.relisting is None:
            self.relisting = asyncio.get_running_loop().run_in_executor(runtime().listers, self.relist)
            self.relisting.add_done_callback(lambda _: setattr(self, "relisting", None))
        await asyncio.shield(self.relisting)

    def _prepare(self):
        """The cluster's credentials and where its watches got to (on a reading thread)."""
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
        self.headers = {"Accept": "application/json"}
        if credentials.get("token"):
            self.headers["Authorization"] = "Bearer " + credentials["token"]
        self.ssl = runtime().ssl_for(credentials) if self.endpoint.startswith("https:") else False

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
            tasks = [asyncio.create_task(self._watch_forever(resource)) for resource in WATCHED]
            self.following.set()
            await asyncio.gather(*tasks)
        finally:
            self.ended.set()
            if self.unsaved:  # a watcher stopping (a handover) leaves where it got to
                self.pool.offer(self.cluster_id, lambda versions=dict(self.versions): self._save(versions))

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
                log.info("cluster %s: %s watch expired (410); relisting", self.cluster_id, resource)
                try:
                    await self._relist()
                except Exception as exc:
                    log.warning("cluster %s: relist failed: %s", self.cluster_id, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30)
            except Exception as exc:
                if self.stop_event.is_set():
                    return
                log.info("cluster %s: %s watch interrupted (%s); retrying in %ss", self.cluster_id, resource, exc or type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)

    async def _watch_once(self, resource):
        rt = runtime()
        seconds = WATCH_SECONDS + (hash((self.cluster_id, resource, time.monotonic())) % (WATCH_SECONDS // 4))  # not all at once
        params = {"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": str(seconds)}
        if self.versions.get(resource):
            params["resourceVersion"] = self.versions[resource]
        timeout = aiohttp.ClientTimeout(total=None, connect=settings.KUBE_REQUEST_TIMEOUT, sock_read=seconds + 30)
        async with rt.opening:
            response = await rt.session.get(self.endpoint + RESOURCES[resource], params=params, headers=self.headers,
                                            ssl=self.ssl, timeout=timeout)
        try:
            if response.status == 410:
                raise Gone()
            if response.status == 404:
                raise NotServed()
            if response.status != 200:
                body = (await response.content.read(300)).decode(errors="replace")
                raise RuntimeError(f"{response.status} {response.reason}: {body}")
            buffer = bytearray()
            async for chunk in response.content.iter_any():
                buffer += chunk
                start = 0
                while (end := buffer.find(b"\n", start)) >= 0:
                    line, start = bytes(buffer[start:end]), end + 1
                    if self.stop_event.is_set():
                        return
                    if line.strip():
                        self._handle(self.cluster_id, resource, orjson.loads(line))
                del buffer[:start]
                if self.backlog:
                    await self._make_room()
        except BaseException:
            response.close()
            raise
        response.release()

    def _handle(self, cluster_id, resource, event):
        """Take one watch event: errors and bookmarks here, changes to the cluster's writer."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise RuntimeError(obj.get("message", "watch error"))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if resource == "events" and kind in ("ADDED", "MODIFIED") and not event_is_recent(obj):
            pass  # outside the window Corral keeps
        elif kind != "BOOKMARK":
            self._submit(lambda: self._apply(resource, kind, obj))
            self.changed.add(resource)
            if resource in ("pods", "nodes"):
                self.summary_pending = True
        if version:
            self.versions[resource] = version
            self.unsaved = True
        self._mark()

    def _submit(self, work):
        if self.backlog or not self.pool.offer(self.cluster_id, work):
            self.backlog.append(work)

    async def _make_room(self):
        """Back-pressure: hand the waiting changes to the writer in order, reading nothing meanwhile."""
        while self.backlog:
            if self.pool.offer(self.cluster_id, self.backlog[0]):
                self.backlog.popleft()
            else:
                await asyncio.sleep(0.05)

    def _mark(self):
        runtime().dirty.add(self)

    def tick(self, now):
        """Queue what is due (on the loop, every CHANGES_INTERVAL); True when nothing is left to do."""
        if self.backlog:
            return False  # after the changes themselves
        if self.changed:
            resources = self.changed
            if self.pool.offer(self.cluster_id, lambda: self._announce_changes(resources)):
                self.changed = set()
        if self.summary_pending and now - self.last_summary >= SUMMARY_INTERVAL:
            if self.pool.offer(self.cluster_id, self._flush_summary):
                self.summary_pending, self.last_summary = False, now
        if self.unsaved and now - self.last_saved >= SAVE_INTERVAL:
            # Queued behind the changes received so far: stored once they are committed.
            if self.pool.offer(self.cluster_id, lambda versions=dict(self.versions): self._save(versions)):
                self.unsaved, self.last_saved = False, now
        return not (self.changed or self.summary_pending or self.unsaved)

    def _save(self, versions):
        if self.server is None or not Cluster.objects.filter(pk=self.cluster_id).exists():
            return
        try:
            ClusterWatchState.objects.update_or_create(
                cluster_id=self.cluster_id, defaults={"server": self.server, "versions": versions, "updated": timezone.now()})
        except IntegrityError:
            pass  # the cluster was deleted meanwhile

    def _apply(self, resource, kind, obj):
        cluster = Cluster.objects.filter(pk=self.cluster_id).first()
        if cluster is None:
            return
        with transaction.atomic():
            # Who hears of a deletion is decided by the row as it was (its namespace's project).
            gone = _stored(cluster, resource, obj) if kind == "DELETED" else None
            instance, deleted_uid = apply_change(cluster, resource, kind, obj)
            singular, topic = resource[:-1], group_name("cluster", cluster.pk)
            if deleted_uid is not None:
                emit(f"{singular}.deleted", {"uid": deleted_uid, "name": obj["metadata"].get("name")}, gone, topic)
            elif instance is not None and resource == "events":
                emit("event.updated", event_payload(instance, workload_of(instance)), instance, topic)
            elif instance is not None:
                emit(f"{singular}.updated", object_payload(resource, instance), instance, topic)
        if resource == "events" and instance is not None:
            self.event_writes += 1
            if self.event_writes % PRUNE_EVERY == 0:
                store.trim_events(cluster)

    def _announce_changes(self, resources):
        """Tell whoever follows (alert evaluation) which resources changed; runs on the cluster's
        writer, so everything changed before is committed."""
        inventory_changed.send(sender=Cluster, cluster_id=self.cluster_id, resources=frozenset(resources))

    def _flush_summary(self):
        """Tell the dashboard the cluster's figures changed (at most once a second)."""
        cluster = Cluster.objects.with_summary().filter(pk=self.cluster_id).first()
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


def _stored(cluster, resource, obj):
    """The row a DELETED watch event removes, read before it goes; when it was never stored, an
    unsaved stand-in in no namespace (heard only by those who see all of the cluster's rows)."""
    model = MODELS[resource]
    metadata = obj.get("metadata") or {}
    lookup = {"name": metadata.get("name")} if resource == "namespaces" else {"uid": metadata.get("uid", "")}
    return model.objects.filter(cluster=cluster, **lookup).first() or model(cluster=cluster)


def _fingerprint(cluster):
    creds = cluster.credentials
    return (creds.get("server"), creds.get("token"), creds.get("client_cert"))


class Supervisor:
    """Keeps one ClusterWatch per monitored cluster this process owns (``clusters.shards``: all of
    them when it is the only watcher), following clusters as they come, go and move."""

    def __init__(self, poll_seconds=5, membership=None):
        self.poll_seconds = poll_seconds
        self.membership = membership
        self.watches = {}
        self.stop_event = threading.Event()

    def reconcile(self):
        close_old_connections()
        if self.membership is not None:
            self.membership.renew()
        monitored = Cluster.objects.filter(state__in=[ClusterState.ACTIVE, ClusterState.UPDATING, ClusterState.UNAVAILABLE]).only("pk", "credentials")
        wanted = {c.pk: _fingerprint(c) for c in monitored if self.membership is None or self.membership.owns(c.pk)}
        for cluster_id, watch in list(self.watches.items()):
            if wanted.get(cluster_id) != watch.fingerprint:
                watch.stop()
                del self.watches[cluster_id]
        for cluster_id, fingerprint in wanted.items():
            if cluster_id not in self.watches:
                watch = ClusterWatch(cluster_id, fingerprint)
                watch.start()
                self.watches[cluster_id] = watch

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.reconcile()
            except Exception:
                log.exception("watcher: could not read the clusters to watch")
            self.stop_event.wait(self.poll_seconds)
        for watch in self.watches.values():
            watch.stop()
        for watch in self.watches.values():
            watch.stop(wait=5)
        writers().drain(timeout=10)  # where each watch got to is stored before the next owner reads it
        if self.membership is not None:
            self.membership.leave()

    def stop(self):
        self.stop_event.set()
