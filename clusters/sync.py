"""Full inventory sync of one cluster: at most one at a time per cluster (an owned, renewed lock:
portal.locks), exponential backoff for clusters that keep failing."""

import logging
import time
from contextlib import contextmanager

from django.core.cache import cache
from django.db import DatabaseError
from django.utils import timezone

from clusters.events import cluster_changed
from clusters.kube.client import ClusterConnectionError, api_client, describe_error, server_version
from clusters.kube.inventory import sync_inventory
from clusters.models import Cluster, ClusterState
from portal import locks

log = logging.getLogger(__name__)
# A sync that finds the lock taken waits this long: enough for the lock of a holder that was
# killed to expire (its ttl) so the redelivered sync runs instead of failing "already running".
LOCK_WAIT = locks.TTL_SECONDS + 10
BACKOFF_BASE, BACKOFF_MAX = 30, 15 * 60


class SyncBusy(Exception):
    pass


class SyncFailed(Exception):
    pass


def lock_name(cluster_id):
    return f"clusters:sync:{cluster_id}"


def _failures_key(cluster_id):
    return f"clusters:sync-failures:{cluster_id}"


def due(cluster_id, now=None):
    """Is a periodic sync due, given the cluster's recent failures?"""
    state = cache.get(_failures_key(cluster_id))
    if not state:
        return True
    failures, last = state
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (failures - 1))
    return (now or time.time()) >= last + delay


def sync(cluster_id, progress=None, versions=None, wait=0, apply=None, lock_ttl=locks.TTL_SECONDS):
    """Read the cluster's whole inventory and write it, page by page; returns the object counts.
    ``versions`` (a dict), when given, receives each list's resourceVersion for watches to start
    from; ``apply``, when given, runs each piece of database work (the watcher's cluster writer).
    Another sync of the cluster running: waits up to ``wait`` seconds, then raises SyncBusy (a dead
    holder's lock frees within its ``lock_ttl``; the watcher's is its lease, so a takeover does not
    wait for a killed watcher's listing).  (The
    writes themselves are guarded per cluster in the database, clusters.kube.store, so even a sync
    that lost its lock to a Redis outage never writes older data over newer.)"""
    step = progress or (lambda pct, msg: None)
    lock = locks.OwnedLock(lock_name(cluster_id), ttl=lock_ttl)
    if not lock.acquire(wait=0):
        if wait:
            step(5, "waiting for the sync of this cluster that is already running")
        if not wait or not lock.acquire(wait=wait):
            raise SyncBusy("a sync of this cluster is already running")
    try:
        cluster = Cluster.objects.get(pk=cluster_id)
        if cluster.state not in (ClusterState.ACTIVE, ClusterState.UPDATING, ClusterState.UNAVAILABLE):
            raise SyncFailed(f"a {cluster.state} cluster is not synced")
        missing = []  # API groups the server does not serve (Kubernetes), synced without them
        if cluster.is_swarm:
            step(10, "reading the swarm's inventory from its manager")
            counts, version = _sync_swarm(cluster, apply)
        else:
            step(10, "reading the inventory from the API server and writing it as it comes")
            counts, version = _sync_kubernetes(cluster, versions, apply, missing)
        Cluster.objects.filter(pk=cluster_id).update(last_synced=timezone.now(), kubernetes_version=version or cluster.kubernetes_version,
                                                     last_seen=timezone.now(), missing_apis=missing)
        if missing:
            log.info("cluster %s: synced without %s", cluster_id, "; ".join(f"{m['group_version']} {'/'.join(m['resources'])} ({m['reason']})".replace("  ", " ") for m in missing))
        cluster.refresh_from_db()
        cluster_changed(cluster, event="cluster.synced")
        cache.delete(_failures_key(cluster_id))
        step(100, "synced " + ", ".join(f"{n} {k}" for k, n in counts.items())
             + "".join(f"; not synced: {m['group_version']} ({m['reason']})" for m in missing if m["resources"]))
        return counts
    except SyncFailed:
        failures, _ = cache.get(_failures_key(cluster_id)) or (0, 0)
        cache.set(_failures_key(cluster_id), (failures + 1, time.time()), BACKOFF_MAX * 4)
        raise
    finally:
        lock.release()


def _sync_kubernetes(cluster, versions, apply, missing):
    """Sync what the API server serves; what it does not is added to ``missing``."""
    with _kubernetes_api(cluster) as api:
        version = server_version(api)
        return sync_inventory(cluster, api, versions, apply, missing), version


@contextmanager
def _kubernetes_api(cluster):
    """The cluster's API client, closed after; what fails talking to it is raised as SyncFailed
    (in words), a database error as it is."""
    api = api_client(cluster.credentials)
    try:
        yield api
    except ClusterConnectionError as exc:
        raise SyncFailed(str(exc)) from exc
    except DatabaseError:
        raise
    except Exception as exc:
        raise SyncFailed(describe_error(exc, cluster.api_endpoint)) from exc
    finally:
        api.close()


def _sync_swarm(cluster, apply):
    """Read the whole swarm, then write it in one go (through ``apply`` when given: the watcher's
    writer, in order with the changes it follows)."""
    from clusters.swarm import client as swarm_client
    from clusters.swarm import inventory as swarm_inventory

    try:
        docker = swarm_client.docker_client(cluster.credentials)
    except swarm_client.SwarmConnectionError as exc:
        raise SyncFailed(str(exc)) from exc
    try:
        version = docker.api.version(api_version=False).get("Version", "")
        data = swarm_inventory.read(docker)
    except Exception as exc:
        raise SyncFailed(swarm_client.describe_error(exc, cluster.api_endpoint)) from exc
    finally:
        docker.close()
    counts, _ = (apply or (lambda work: work()))(lambda: swarm_inventory.write(cluster, data))
    return counts, version

