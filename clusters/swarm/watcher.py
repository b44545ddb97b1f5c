"""Following a Swarm live: the engine's event stream, in the watcher process beside the Kubernetes
watches (``clusters.watcher.Supervisor`` starts a SwarmWatch for each Swarm cluster it owns).

Docker events name what changed (a service updated, a container of a task died, a node down) but
carry no object, and a manager hears nothing of the task state changes on other nodes.  So an event
is a reason to read again: a burst of events (debounced for DEBOUNCE seconds) is followed by one
read of what they name — the services (a service event, or a container event of one of their
tasks) with their tasks, the nodes on a node event, everything when a network, secret or config
changed — written through the cluster's writer in order with everything else, only what changed,
each change announced on the cluster's websocket topic.  Every POLL_SECONDS it reads the nodes,
services and tasks anyway, events or not (what happens on other nodes).  The stream is opened before the first full read, so nothing that happens
between the two is missed.

One thread per Swarm cluster (blocking reads of one HTTP stream, and one more for the stream
itself): Swarms are few beside Kubernetes clusters.
"""

import logging
import queue
import threading
import time

from django.db import connection

from clusters import sync
from clusters.models import Cluster

log = logging.getLogger(__name__)

DEBOUNCE = 0.1
POLL_SECONDS = 10
EVENT_TYPES = ["service", "node", "container", "secret", "config", "network"]
# Container events that change a task's state (not exec_*, attach, top...).
CONTAINER_ACTIONS = {"create", "start", "die", "kill", "oom", "stop", "destroy", "health_status", "pause", "unpause", "restart"}


class SwarmWatch:
    """The event stream of one Swarm cluster and the reads it causes."""

    def __init__(self, cluster_id, fingerprint, pool=None):
        from clusters.watcher import writers

        self.cluster_id = cluster_id
        self.fingerprint = fingerprint
        self.pool = pool or writers()
        self.stop_event = threading.Event()
        self.following = threading.Event()  # the stream is open and the first full read written
        self.ended = threading.Event()
        self.events = queue.Queue()
        self.thread = None
        self.client = None
        self.stream = None
        self.reads = 0

    def start(self):
        self.thread = threading.Thread(target=self._run, name=f"swarm-watch-{self.cluster_id}", daemon=True)
        self.thread.start()

    def stop(self, wait=0):
        self.stop_event.set()
        self.events.put(None)
        stream = self.stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a stream that broke already
                pass
        if wait:
            self.ended.wait(wait)

    # --- the thread -------------------------------------------------------------------------

    def _run(self):
        backoff = 1
        try:
            while not self.stop_event.is_set():
                try:
                    self._follow()
                    backoff = 1
                except Exception as exc:  # noqa: BLE001 - the engine went away; try again
                    if self.stop_event.is_set():
                        break
                    log.info("swarm cluster %s: event stream interrupted (%s); retrying in %ss", self.cluster_id, exc, backoff)
                    self.following.clear()
                    self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, 30)
                finally:
                    self._close()
        finally:
            self.ended.set()

    def _close(self):
        for thing in (self.stream, self.client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001
                    pass
        self.stream = self.client = None
        connection.close()

    def _follow(self):
        from clusters.swarm.client import docker_client

        credentials = Cluster.objects.get(pk=self.cluster_id).credentials
        connection.close()
        self.client = docker_client(credentials)
        # A queue of this stream's own: the reader of a stream closed before puts its end in its
        # old queue, where it cannot end this one (it did, each time, the watch flapping for good).
        self.events = queue.Queue()
        if self.stop_event.is_set():
            return
        # The stream first, then the full read: a change between the two is in the stream.
        self.stream = self.client.api.events(decode=True, filters={"type": EVENT_TYPES})
        reader = threading.Thread(target=self._pump, args=(self.stream, self.events), name=f"swarm-events-{self.cluster_id}", daemon=True)
        reader.start()
        self._read_and_write(full=True)
        self.following.set()
        polled = time.monotonic()
        while not self.stop_event.is_set():
            # What a manager hears no event of (tasks on other nodes, a task's state reported after
            # its container's event) is read every POLL_SECONDS, however busy the stream is: a
            # service that keeps failing elsewhere must not keep the others from being read again.
            if time.monotonic() - polled >= POLL_SECONDS:
                self._read_and_write()
                polled = time.monotonic()
            try:
                event = self.events.get(timeout=max(0.0, polled + POLL_SECONDS - time.monotonic()))
            except queue.Empty:
                continue
            if event is None:
                return
            if isinstance(event, Exception):
                raise event
            changed = Changed()
            changed.add(event)
            deadline = time.monotonic() + DEBOUNCE
            while (left := deadline - time.monotonic()) > 0:  # a burst (a scale, an update) is one read
                try:
                    more = self.events.get(timeout=left)
                except queue.Empty:
                    break
                if more is None:
                    return
                if isinstance(more, Exception):
                    raise more
                changed.add(more)
            if changed.full:
                self._read_and_write(full=True)
                polled = time.monotonic()
            elif changed.services or changed.nodes:
                self._read_and_write(services=changed.services, nodes=changed.nodes)

    def _pump(self, stream, events):
        """Move the stream's events to its queue (a thread: reading the stream blocks)."""
        try:
            for event in stream:
                events.put(event)
            events.put(ConnectionError("the engine closed the event stream"))
        except Exception as exc:  # noqa: BLE001 - handed to the following thread
            events.put(exc)

    def _read_and_write(self, full=False, services=None, nodes=True):
        """Read the swarm and write what changed, on the cluster's writer.  ``full``: everything,
        as a sync (its lock keeps it from racing a Celery resync; last_synced says when);
        ``services`` (ids): only those services and their tasks (and the nodes if ``nodes``); else
        the nodes, services and tasks."""
        from clusters.swarm import inventory

        apply = lambda work: self.pool.call(self.cluster_id, work)  # noqa: E731
        if full:
            sync.sync(self.cluster_id, apply=apply, wait=sync.LOCK_WAIT)
        else:
            from docker.errors import NotFound

            try:
                data = inventory.read(self.client, objects=False, services=services, nodes=nodes)
            except NotFound:  # one of the services was removed meanwhile: read everything
                self._read_and_write(full=True)
                return
            cluster = Cluster.objects.filter(pk=self.cluster_id).first()
            connection.close()
            if cluster is None:
                self.stop_event.set()
                return
            apply(lambda: inventory.write(cluster, data))
        self.reads += 1


class Changed:
    """What a burst of events says changed: which services (a service event, or a container event
    of one of its tasks), whether nodes did, whether everything must be read (a secret, config or
    network: they change stacks too)."""

    def __init__(self):
        self.services, self.nodes, self.full = set(), False, False

    def add(self, event):
        kind, actor = event.get("Type"), event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        if kind == "service":
            self.services.add(actor.get("ID", ""))
        elif kind == "container":
            # A task's container, and an action that changes its task (not exec_*, attach, top...).
            if "com.docker.swarm.service.id" in attributes and event.get("Action", "").split(":")[0] in CONTAINER_ACTIONS:
                self.services.add(attributes["com.docker.swarm.service.id"])
        elif kind == "node":
            self.nodes = True
        elif kind in ("secret", "config", "network"):
            self.full = True
        self.services.discard("")
