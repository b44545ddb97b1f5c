"""The live watcher: its own process (``manage.py watch_clusters``), next to the Celery worker.

For every monitored cluster it lists the inventory once (a full sync, which also yields the
resourceVersions), then follows a watch per resource from there.  Watch threads only read and
parse; every database write goes through a small pool of writer threads, one queue each, a
cluster always on the same writer so its changes apply in order.  So the database sees a handful
of connections however many clusters are followed.  Each change is emitted on the cluster's
websocket topic after its commit, to those who may view the changed object.  A watch that
expires (410 Gone) makes the cluster relist once; a cluster that stops answering is retried by
the same thread with capped backoff, so nothing piles up while it is down.

Relists write through the cluster's writer too, a page at a time, in order with its watch events;
the writes are guarded (``clusters.kube.store``) so nothing older replaces anything newer.  Writer
queues are bounded: when the database falls behind, watch threads wait instead of piling up changes.
When the database cannot be reached (a restart, a failover), a writer holds its change and tries it
again until the database answers (up to DATABASE_OUTAGE_SECONDS), so nothing seen meanwhile is lost
and order is kept; the watch threads wait behind the full queues.
"""

import json
import logging
import queue
import threading
import time

from django.db import InterfaceError, OperationalError, close_old_connections, connection, transaction
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from clusters import sync
from clusters.events import FEED_CLUSTERS, cluster_payload
from clusters.explain import event_payload, workload_of
from clusters.kube import store
from clusters.kube.client import api_client
from clusters.kube.inventory import MODELS, RESOURCES, apply_change, event_is_recent
from clusters.models import Cluster, ClusterState, Node, Pod
from clusters.signals import inventory_changed
from portal.events import emit, group_name
from portal.permissions import aggregate_audience

log = logging.getLogger(__name__)

WATCHED = ["namespaces", "nodes", "pods", "services", "deployments", "statefulsets", "daemonsets", "jobs", "cronjobs", "events"]
PRUNE_EVERY = 100  # event writes between two trims of a cluster's events to the newest MAX_EVENTS
WATCH_SECONDS = 240
SUMMARY_INTERVAL = 1.0
CHANGES_INTERVAL = 0.25  # how often the resources changed are announced (inventory_changed)
WRITERS = 4
QUEUE_LIMIT = 1000  # changes waiting per writer; beyond it, watch threads wait (back-pressure)
DATABASE_OUTAGE_SECONDS = 600  # how long a writer holds a change while the database is unreachable
# Full relists at once: each reads a whole cluster (a page at a time) and writes through the writers.
RELISTS = threading.BoundedSemaphore(4)


class Gone(Exception):
    """The resourceVersion is too old (410): relist."""


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
    """All the watches of one cluster."""

    def __init__(self, cluster_id, fingerprint, pool=None):
        self.cluster_id = cluster_id
        self.fingerprint = fingerprint
        self.pool = pool or writers()
        self.stop_event = threading.Event()
        self.versions = {}
        self.relist_lock = threading.Lock()
        self.threads = []
        self.summary_pending = False
        self.changed = set()
        self.responses = set()
        self.credentials = None
        self.event_writes = 0

    def start(self):
        thread = threading.Thread(target=self._main, name=f"watch-cluster-{self.cluster_id}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self, wait=0):
        """Stop every watch; open streams are closed so threads end at once."""
        self.stop_event.set()
        for response in list(self.responses):
            try:
                response.shutdown() if hasattr(response, "shutdown") else response.close()
            except Exception:
                pass
        deadline = time.monotonic() + wait
        for thread in self.threads:
            thread.join(timeout=max(0, deadline - time.monotonic()))

    # --- listing ----------------------------------------------------------------------------

    def relist(self):
        """Full sync; refreshes every resource's starting resourceVersion."""
        with self.relist_lock, RELISTS:
            try:
                self.credentials = Cluster.objects.get(pk=self.cluster_id).credentials
                versions = {}
                sync.sync(self.cluster_id, versions=versions, apply=lambda work: self.pool.call(self.cluster_id, work))
                self.versions.update(versions)
                self.changed.update(WATCHED + ["events"])
            finally:
                connection.close()  # a watch thread keeps no database connection between relists

    def _main(self):
        backoff = 1
        while not self.stop_event.is_set():
            try:
                self.relist()
                break
            except sync.SyncBusy:
                self.stop_event.wait(1)
            except Exception as exc:
                log.warning("cluster %s: initial list failed (%s); retrying in %ss", self.cluster_id, exc, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30)
            finally:
                connection.close()
        for resource in WATCHED:
            thread = threading.Thread(target=self._watch_forever, args=(resource,), name=f"watch-{self.cluster_id}-{resource}", daemon=True)
            thread.start()
            self.threads.append(thread)
        last_summary = 0.0
        while not self.stop_event.wait(CHANGES_INTERVAL):
            if self.changed:
                resources, self.changed = self.changed, set()
                self.pool.submit(self.cluster_id, lambda resources=resources: self._announce_changes(resources))
            if self.summary_pending and time.monotonic() - last_summary >= SUMMARY_INTERVAL:
                self.summary_pending, last_summary = False, time.monotonic()
                self.pool.submit(self.cluster_id, self._flush_summary)

    # --- watching ---------------------------------------------------------------------------

    def _watch_forever(self, resource):
        backoff = 1
        while not self.stop_event.is_set():
            try:
                self._watch_once(resource)
                backoff = 1
            except Gone:
                log.info("cluster %s: %s watch expired (410); relisting", self.cluster_id, resource)
                try:
                    self.relist()
                except Exception as exc:
                    log.warning("cluster %s: relist failed: %s", self.cluster_id, exc)
                    self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, 30)
            except Exception as exc:
                if self.stop_event.is_set():
                    return
                log.info("cluster %s: %s watch interrupted (%s); retrying in %ss", self.cluster_id, resource, exc, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30)

    def _watch_once(self, resource):
        api = api_client(self.credentials)
        try:
            params = [("watch", "1"), ("allowWatchBookmarks", "true"), ("timeoutSeconds", WATCH_SECONDS)]
            if self.versions.get(resource):
                params.append(("resourceVersion", self.versions[resource]))
            try:
                response = api.call_api(
                    RESOURCES[resource], "GET", query_params=params, header_params={"Accept": "application/json"},
                    auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                    _request_timeout=(api.corral_timeout, WATCH_SECONDS + 30),
                )
            except ApiException as exc:
                if exc.status == 410:
                    raise Gone() from exc
                raise
            self.responses.add(response)
            try:
                for line in iter_resp_lines(response):
                    if self.stop_event.is_set():
                        return
                    if line:
                        self._handle(self.cluster_id, resource, json.loads(line))
            finally:
                self.responses.discard(response)
                response.release_conn()
        finally:
            api.close()

    def _handle(self, cluster_id, resource, event):
        """Take one watch event: errors and bookmarks here, changes to a writer."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise RuntimeError(obj.get("message", "watch error"))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if resource == "events" and kind in ("ADDED", "MODIFIED") and not event_is_recent(obj):
            pass  # outside the window Corral keeps
        elif kind != "BOOKMARK":
            self.pool.submit(self.cluster_id, lambda: self._apply(resource, kind, obj))
            self.changed.add(resource)
            if resource in ("pods", "nodes"):
                self.summary_pending = True
        if version:
            self.versions[resource] = version

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
    """Keeps one ClusterWatch per monitored cluster, following clusters as they come and go."""

    def __init__(self, poll_seconds=5):
        self.poll_seconds = poll_seconds
        self.watches = {}
        self.stop_event = threading.Event()

    def reconcile(self):
        close_old_connections()
        monitored = Cluster.objects.filter(state__in=[ClusterState.ACTIVE, ClusterState.UPDATING, ClusterState.UNAVAILABLE])
        wanted = {c.pk: _fingerprint(c) for c in monitored}
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

    def stop(self):
        self.stop_event.set()
