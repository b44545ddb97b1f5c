"""Celery beat's scheduler for Corral: django-celery-beat's DatabaseScheduler, sending only while it
holds the ``beat`` lease, and touching its liveness file on every tick.

Exactly one beat must send the periodic tasks, or every one of them runs twice.  The Helm chart runs
one replica with the Recreate strategy, and this lease covers what that cannot (a rollout by hand, a
node that vanishes while its pod is still counted, two docker-compose stacks on one Redis): a second
beat stands by, ticking, and takes over within the lease's TTL (30 s) once the first one stops
renewing it.  The lease is portal.locks' OwnedLock (a redis-py Lock, renewed by its holder).
"""

import logging

import redis
from django_celery_beat.schedulers import DatabaseScheduler

from portal import liveness
from portal.locks import OwnedLock

log = logging.getLogger(__name__)
LEASE = "beat"


class LeasedScheduler(DatabaseScheduler):
    lease = None
    standing_by = False

    def tick(self, *args, **kwargs):
        liveness.touch("beat")
        if not self.hold_lease():
            return self.max_interval
        return super().tick(*args, **kwargs)

    def hold_lease(self):
        if self.lease is not None and not self.lease.lost:
            return True
        if self.lease is not None:  # cut off from Redis past the TTL: someone else may have sent since
            log.warning("beat: lost the lease; sending nothing until it is held again")
            self.lease.release()
            self.lease = None
        try:
            lease = OwnedLock(LEASE)
            if lease.acquire():
                self.lease, self.standing_by = lease, False
                log.info("beat: holding the lease; sending periodic tasks")
                return True
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("beat: cannot reach Redis for the lease (%s); sending nothing", exc)
            return False
        if not self.standing_by:
            log.info("beat: another beat holds the lease; standing by")
            self.standing_by = True
        return False

    def close(self):
        try:
            super().close()
        finally:
            if self.lease is not None:
                self.lease.release()
                self.lease = None
            liveness.clear("beat")
