"""Watcher leases in a real Redis (clusters.shards): a SIGKILLed watcher process is noticed by the
others when its Redis connection closes, long before its lease would lapse; a lease whose holder was
never seen connected (an older watcher, or CLIENT LIST refused) is kept until it lapses; a change of
the live members is told at once to whoever started the renewals."""

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings

from clusters import shards
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]

HOLDER = """
import os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
import django
django.setup()
from clusters import shards
shards.KEY = sys.argv[2]
member = shards.Membership(sys.argv[1], lease_seconds=60)
member.renew()
print("leased", flush=True)
time.sleep(600)
"""


@pytest.fixture
def key(monkeypatch):
    name = f"corral:test-watchers:{uuid.uuid4().hex}"
    monkeypatch.setattr(shards, "KEY", name)
    yield name
    redis.Redis.from_url(settings.REDIS_URL).delete(name)


def hold_lease(member, key):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, member, key], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PORTAL_REDIS_URL": settings.REDIS_URL})
    assert proc.stdout.readline().strip() == "leased"
    return proc


def test_a_killed_watcher_is_dropped_when_its_connection_closes_not_after_its_lease(key):
    survivor = shards.Membership("survivor", lease_seconds=60)
    dead = f"doomed-{uuid.uuid4().hex[:6]}"
    proc = hold_lease(dead, key)
    try:
        assert survivor.renew() == sorted(["survivor", dead])  # its connection seen
        proc.kill()
        proc.wait()
        started = time.monotonic()
        wait_for(lambda: survivor.renew() == ["survivor"], 10, "the killed watcher to be dropped", interval=0.2)
        assert time.monotonic() - started < 10  # its lease had 60 s left
        assert redis.Redis.from_url(settings.REDIS_URL).zscore(key, dead) is None  # dropped for every member
        assert all(survivor.owns(cluster_id) for cluster_id in range(50))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        survivor.leave()


def test_a_lease_whose_holder_was_never_seen_connected_lasts_until_it_lapses(key):
    client = redis.Redis.from_url(settings.REDIS_URL)
    seconds, micros = client.time()
    client.zadd(key, {"older-watcher": seconds + micros / 1e6 + 3})  # a watcher with no named connection
    survivor = shards.Membership("survivor", lease_seconds=60)
    try:
        assert survivor.renew() == ["older-watcher", "survivor"]
        time.sleep(1)
        assert survivor.renew() == ["older-watcher", "survivor"]  # not dropped for want of a connection
        wait_for(lambda: survivor.renew() == ["survivor"], 10, "the lease to lapse", interval=0.5)
    finally:
        survivor.leave()


def test_renewals_run_on_their_own_and_tell_a_change_of_members_at_once(key):
    changed = threading.Event()
    survivor = shards.Membership("survivor", lease_seconds=2)  # renewed every 0.4 s
    survivor.start(on_change=changed.set)
    other = shards.Membership("other", lease_seconds=2)
    try:
        other.renew()
        assert changed.wait(3), "the new member was not told"
        assert survivor.members == ["other", "survivor"]
        changed.clear()
        time.sleep(3)  # longer than the lease: the survivor's thread renewed it meanwhile
        assert redis.Redis.from_url(settings.REDIS_URL).zscore(key, "survivor") is not None
        assert changed.is_set() and survivor.members == ["survivor"]  # the other one, not renewed, lapsed
    finally:
        survivor.leave()
        other.leave()
    assert redis.Redis.from_url(settings.REDIS_URL).zscore(key, "survivor") is None  # leaving gives the clusters up
