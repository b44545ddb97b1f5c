"""The owned lock (portal.locks) against the real Redis: only its holder releases it, renewal keeps
it through a slow holder, and a SIGKILLed holder's lock frees within its short ttl."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from clusters import sync
from clusters.models import Cluster
from portal.locks import LockBusy, LockLost, OwnedLock, client, is_held

HOLDER = """
import sys, time, django
django.setup()
from portal.locks import OwnedLock
lock = OwnedLock(sys.argv[1], ttl=int(sys.argv[2]))
assert lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def unique(name):
    return f"test:{name}:{uuid.uuid4().hex[:8]}"


def test_a_second_holder_can_neither_take_nor_release_the_first_ones_lock():
    name = unique("owned")
    first, second = OwnedLock(name), OwnedLock(name)
    assert first.acquire()
    try:
        assert not second.acquire()
        with pytest.raises(LockBusy):
            second.__enter__()
        second.release()  # what a stale `finally` does: must not free the first holder's lock
        assert is_held(name)
        assert not OwnedLock(name).acquire()
    finally:
        first.release()
    assert not is_held(name)


def test_a_holder_that_lost_its_lock_does_not_delete_the_next_holders():
    """The reconcile bug: a pass outlived its lock, a second pass took it, the first one's
    `finally` deleted it.  Here the first holder stops renewing (cut off), the lock expires, a
    second holder takes it, and the first one's release leaves it alone."""
    name = unique("expired")
    first = OwnedLock(name, ttl=1)
    assert first.acquire()
    first._stop.set()  # renewal stops, as when the holder cannot reach Redis
    first._renewer.join()
    time.sleep(1.5)
    second = OwnedLock(name)
    assert second.acquire()
    try:
        first.release()
        assert is_held(name)
        assert not OwnedLock(name).acquire()
    finally:
        second.release()


def test_renewal_keeps_the_lock_through_a_holder_slower_than_its_ttl():
    name = unique("slow")
    lock = OwnedLock(name, ttl=1)
    with lock:
        time.sleep(3.5)  # three and a half ttls of work
        assert is_held(name)
        assert not OwnedLock(name).acquire()
        lock.check()  # still ours
    assert not is_held(name)


def test_a_lock_that_expired_while_its_holder_was_cut_off_is_taken_again_but_reported_lost():
    name = unique("reclaimed")
    lock = OwnedLock(name, ttl=1)
    with lock:
        client().delete(f"corral:lock:{name}")  # as if it expired while Redis was unreachable
        time.sleep(1)  # a renewal round
        assert is_held(name) and not OwnedLock(name).acquire()  # free, so taken again
        with pytest.raises(LockLost):
            lock.check()  # but what it guards may have been touched meanwhile
    assert not is_held(name)


def _holder(name, ttl):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, name, str(ttl)], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_sigkilled_holders_lock_frees_within_its_ttl():
    name = unique("killed")
    proc = _holder(name, ttl=3)
    try:
        assert not OwnedLock(name).acquire()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        lock = OwnedLock(name)
        assert lock.acquire(wait=10)
        assert time.monotonic() - killed <= 3.5
        lock.release()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.django_db(transaction=True)
def test_a_sync_after_a_killed_sync_runs_instead_of_failing_already_running():
    """A sync killed while holding the cluster's sync lock: the next sync (the redelivered one)
    waits for the dead holder's lock to expire and runs."""
    cluster = Cluster.objects.create(name="killed-sync", driver="imported", state="active",
                                     credentials={"server": "https://127.0.0.1:1", "token": "x"})
    proc = _holder(sync.lock_name(cluster.pk), ttl=3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with pytest.raises(sync.SyncBusy):
        sync.sync(cluster.pk)  # no waiting: the dead holder's lock is still there
    started = time.monotonic()
    with pytest.raises(sync.SyncFailed, match="cannot connect|refused"):
        sync.sync(cluster.pk, wait=sync.LOCK_WAIT)  # got the lock; the cluster itself is unreachable
    assert time.monotonic() - started <= 4
    assert not is_held(sync.lock_name(cluster.pk))
