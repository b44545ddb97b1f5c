"""Sharing the clusters among watcher processes, on one machine or many: a lease per process in
Redis and rendezvous hashing over the live ones.

Each watcher renews its lease (a member of a sorted set, scored by when it expires, in Redis's own
clock) every few seconds and reads the live members; a cluster belongs to the member with the
highest hash of (member, cluster).  When a member dies its lease lapses within LEASE_SECONDS and
every other member computes, on its own, who takes each of its clusters; a new member takes from
each of the others only the clusters it now wins (about 1/N of them).  The new owner resumes the
watches from where the last one stored it got to (``ClusterWatchState``), so a handover loses no
change; for the few seconds two members may follow a cluster at once, the guarded writes
(``clusters.kube.store``) keep either from undoing the other's.

When Redis cannot be reached, a member keeps the members it knew (it goes on following its
clusters); the others' leases on it lapse only once Redis answers again and it still does not renew.
"""

import hashlib
import logging
import os
import socket

import redis
from django.conf import settings

log = logging.getLogger(__name__)

KEY = "corral:watchers"
LEASE_SECONDS = 15


def score(member, cluster_id):
    return int.from_bytes(hashlib.blake2b(f"{member}/{cluster_id}".encode(), digest_size=8).digest(), "big")


def owner(cluster_id, members):
    """The member that follows ``cluster_id``: the same answer in every process that knows the
    same members, and a member's leaving moves only its own clusters."""
    return max(members, key=lambda member: score(member, cluster_id))


class Membership:
    def __init__(self, member_id=None, lease_seconds=LEASE_SECONDS, client=None):
        self.member_id = member_id or os.environ.get("PORTAL_WATCHER_ID") or socket.gethostname()
        self.lease_seconds = lease_seconds
        self.client = client or redis.Redis.from_url(settings.REDIS_URL, **settings.REDIS_CLIENT_OPTIONS)
        self.members = [self.member_id]

    def renew(self):
        """Renew this member's lease; returns the live members (the last known when Redis fails)."""
        try:
            seconds, micros = self.client.time()
            now = seconds + micros / 1e6
            pipe = self.client.pipeline()
            pipe.zadd(KEY, {self.member_id: now + self.lease_seconds})
            pipe.zremrangebyscore(KEY, "-inf", now)
            pipe.zrange(KEY, 0, -1)
            members = pipe.execute()[-1]
            found = sorted(m.decode() for m in members)
            if found != self.members:
                log.info("watchers: %d live (%s)", len(found), ", ".join(found))
            self.members = found
        except redis.RedisError as exc:
            log.warning("watchers: cannot renew the lease in Redis (%s); keeping the %d members known", exc, len(self.members))
        return self.members

    def owns(self, cluster_id):
        return owner(cluster_id, self.members) == self.member_id

    def leave(self):
        """Give the clusters up at once (a clean stop), instead of after the lease."""
        try:
            self.client.zrem(KEY, self.member_id)
        except redis.RedisError:
            pass
