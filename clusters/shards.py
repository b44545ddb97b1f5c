"""Sharing the clusters among watcher processes, on one machine or many: a lease per process in
Redis and rendezvous hashing over the live ones.

Each watcher renews its lease (a member of a sorted set, scored by when it expires, in Redis's own
clock) every RENEW_SECONDS from a thread of its own, so a busy event loop or a long reconcile does
not let it lapse, and reads the live members; a cluster belongs to the member with the highest hash
of (member, cluster).  A member that dies is noticed two ways:

- its Redis connection (named ``corral-watcher:<member>``) closes when its process ends, even on
  SIGKILL, and the others see it gone from ``CLIENT LIST`` at their next renewal (a second or two);
- else (its machine gone, the network cut, ``CLIENT LIST`` not allowed) its lease lapses after
  LEASE_SECONDS.

Either way every other member computes, on its own, who takes each of its clusters, and is told at
once (``on_change``) rather than at its next poll; a new member takes from each of the others only
the clusters it now wins (about 1/N of them).  The new owner resumes the watches from where the
last one stored it got to (``ClusterWatchState``), so a handover loses no change; for the few
seconds two members may follow a cluster at once, the guarded writes (``clusters.kube.store``)
keep either from undoing the other's.

When Redis cannot be reached, a member keeps the members it knew (it goes on following its
clusters); the others' leases on it lapse only once Redis answers again and it still does not renew.
"""

import hashlib
import logging
import os
import socket
import threading
import time

import redis
from django.conf import settings

log = logging.getLogger(__name__)

KEY = "corral:watchers"
CLIENT_PREFIX = "corral-watcher:"


def score(member, cluster_id):
    return int.from_bytes(hashlib.blake2b(f"{member}/{cluster_id}".encode(), digest_size=8).digest(), "big")


def owner(cluster_id, members):
    """The member that follows ``cluster_id``: the same answer in every process that knows the
    same members, and a member's leaving moves only its own clusters."""
    return max(members, key=lambda member: score(member, cluster_id))


class Membership:
    def __init__(self, member_id=None, lease_seconds=None, renew_seconds=None, client=None):
        self.member_id = member_id or os.environ.get("PORTAL_WATCHER_ID") or socket.gethostname()
        self.lease_seconds = lease_seconds or settings.WATCHER_LEASE_SECONDS
        # Five renewals a lease: a member misses four (a slow Redis, a loaded host) before it lapses.
        self.renew_seconds = renew_seconds or self.lease_seconds / 5
        self.client = client or redis.Redis.from_url(settings.REDIS_URL, client_name=CLIENT_PREFIX + self.member_id,
                                                     **settings.REDIS_CLIENT_OPTIONS)
        self.members = [self.member_id]
        self.connected_once = set()  # members whose named connection was seen: its closing is their end
        self.stop_event = threading.Event()
        self.thread = None

    def renew(self):
        """Renew this member's lease; returns the live members (the last known when Redis fails)."""
        try:
            seconds, micros = self.client.time()
            now = seconds + micros / 1e6
            pipe = self.client.pipeline()
            pipe.zadd(KEY, {self.member_id: now + self.lease_seconds})
            pipe.zremrangebyscore(KEY, "-inf", now)
            pipe.zrange(KEY, 0, -1)
            leased = {m.decode() for m in pipe.execute()[-1]}
            gone = self._disconnected(leased)
            if gone:
                log.info("watchers: %s ended (connection to Redis closed); taking over before the lease lapses", ", ".join(sorted(gone)))
                self.client.zrem(KEY, *gone)
            found = sorted(leased - gone)
            if found != self.members:
                log.info("watchers: %d live (%s)", len(found), ", ".join(found))
            self.members = found
        except redis.RedisError as exc:
            log.warning("watchers: cannot renew the lease in Redis (%s); keeping the %d members known", exc, len(self.members))
        return self.members

    def _disconnected(self, leased):
        """Leased members whose Redis connection was seen and is now closed (their process ended)."""
        try:
            names = {c.get("name", "") for c in self.client.client_list(_type="normal")}
        except redis.ResponseError:
            return set()  # CLIENT LIST not allowed (an ACL, a managed Redis): the lease alone decides
        connected = {name[len(CLIENT_PREFIX):] for name in names if name.startswith(CLIENT_PREFIX)}
        self.connected_once = (self.connected_once | connected) & leased
        return {m for m in self.connected_once - connected if m != self.member_id}

    def owns(self, cluster_id):
        return owner(cluster_id, self.members) == self.member_id

    def start(self, on_change=None):
        """Renew the lease every ``renew_seconds`` on a thread of its own; ``on_change()`` when the
        live members change."""
        self.renew()

        def run():
            last = time.monotonic()
            while not self.stop_event.wait(self.renew_seconds):
                now = time.monotonic()
                if now - last > self.lease_seconds / 2:
                    log.warning("watchers: the lease was renewed %.1f s after the last time (every %.1f s wanted)", now - last, self.renew_seconds)
                last = now
                before = self.members
                if self.renew() != before and on_change is not None:
                    on_change()

        self.thread = threading.Thread(target=run, name="watcher-lease", daemon=True)
        self.thread.start()

    def leave(self):
        """Give the clusters up at once (a clean stop), instead of after the lease."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=self.renew_seconds + settings.REDIS_TIMEOUT)
        try:
            self.client.zrem(KEY, self.member_id)
        except redis.RedisError:
            pass
