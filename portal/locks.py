"""The one lock primitive: owned, short-lived and renewed while its holder works.

    with OwnedLock(f"clusters:sync:{cluster_id}", wait=40) as lock:
        ...            # a renewal thread keeps the lock alive as long as this block runs
        lock.check()   # raises LockLost if someone else has it now (we were cut off too long)

A redis-py ``Lock`` holds a random token; only the holder of that token can extend or release it
(Lua scripts compare the token), so a second holder can never delete the first one's lock.  The
lock lives ``ttl`` seconds and a daemon thread renews it every ``ttl / 3``: a slow holder keeps it
as long as it runs, however long that is, and a holder that is killed (SIGKILL, OOM, the hard time
limit of Celery) stops renewing, so its lock frees within ``ttl`` and the redelivered work can run.
"""

import logging
import threading

import redis
from django.conf import settings
from redis.exceptions import LockError, LockNotOwnedError

log = logging.getLogger(__name__)

TTL_SECONDS = 30
_clients = {}
_clients_guard = threading.Lock()


class LockBusy(Exception):
    pass


class LockLost(Exception):
    pass


def client():
    """A Redis client with timeouts and retries (one per URL and process; redis-py re-creates its
    connections after a fork, so Celery's pool children are safe)."""
    url = settings.REDIS_URL
    with _clients_guard:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url, **settings.REDIS_CLIENT_OPTIONS)
        return _clients[url]


class OwnedLock:
    def __init__(self, name, ttl=TTL_SECONDS, wait=0):
        self.name = f"corral:lock:{name}"
        self.ttl = ttl
        self.wait = wait
        # thread_local=False: the renewal thread must see the token the acquiring thread got.
        self._lock = client().lock(self.name, timeout=ttl, thread_local=False)
        self._stop = threading.Event()
        self._renewer = None
        self.lost = False

    def acquire(self, wait=None):
        """True when this holder now owns the lock (waiting up to ``wait`` seconds for it)."""
        wait = self.wait if wait is None else wait
        got = self._lock.acquire(blocking=wait > 0, blocking_timeout=wait or None)
        if got:
            self.lost = False
            self._stop.clear()
            self._renewer = threading.Thread(target=self._renew, name=f"renew {self.name}", daemon=True)
            self._renewer.start()
        return got

    def _renew(self):
        while not self._stop.wait(self.ttl / 3):
            try:
                self._lock.reacquire()
            except LockNotOwnedError:
                # It expired while we could not reach Redis: someone else may have held it since.
                # The holder learns at its next check(); meanwhile, if it is free, keep it taken.
                self.lost = True
                try:
                    if not self._lock.acquire(blocking=False, token=self._lock.local.token):
                        log.warning("lock %s was lost while held and is taken by another holder", self.name)
                        return
                    log.warning("lock %s expired while Redis was unreachable; taken again", self.name)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("could not take lock %s again (%s); retrying", self.name, exc)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("could not renew lock %s (%s); retrying", self.name, exc)

    def check(self):
        """Raise LockLost when the lock is no longer ours (call before writing what it guards)."""
        if self.lost:
            raise LockLost(f"lost the lock {self.name}")

    def release(self):
        """Release the lock if it is still ours; never anyone else's."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        try:
            self._lock.release()
        except LockNotOwnedError:
            log.warning("lock %s had already passed to another holder; left to it", self.name)
        except LockError:
            pass  # never acquired, or already released
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("could not release lock %s (%s); it frees itself within %ss", self.name, exc, self.ttl)

    def __enter__(self):
        if not self.acquire():
            raise LockBusy(f"{self.name} is held by another worker")
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def is_held(name):
    """Does anyone hold the lock ``name`` now?"""
    return bool(client().exists(f"corral:lock:{name}"))
