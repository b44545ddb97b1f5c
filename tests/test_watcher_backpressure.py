"""Back-pressure in the watcher: a cluster whose writer queue is full holds its changes, in order,
and hands them over when the writer makes room, woken by the writer rather than polling."""

import asyncio
import threading
import time

from clusters import watcher


async def test_a_cluster_held_back_by_a_full_queue_is_woken_when_its_writer_makes_room(monkeypatch):
    monkeypatch.setattr(watcher, "ROOM_RECHECK", 30.0)  # only the writer's wake-up can end the wait in time
    pool = watcher.Writers(count=1, limit=2)
    blocked, done = threading.Event(), []
    pool.submit(7, blocked.wait)  # the writer is busy with this until the test lets go
    watch = watcher.ClusterWatch(7, None, pool=pool)
    for n in range(6):
        watch._submit(lambda n=n: done.append(n))
    assert len(watch.backlog) >= 3  # the queue (2) is full: the rest waits, in order

    making_room = asyncio.ensure_future(watch._make_room())
    await asyncio.sleep(0.3)
    assert not making_room.done()  # nothing can be handed over while the writer is busy
    started = time.monotonic()
    blocked.set()
    await asyncio.wait_for(making_room, 5)
    assert time.monotonic() - started < 3  # woken by the writer, not by the 30 s recheck
    assert not watch.backlog
    assert await asyncio.to_thread(pool.drain, 10)
    assert done == list(range(6))


def test_the_setting_decides_how_many_writers_and_each_cluster_keeps_to_one(settings):
    settings.WATCHER_WRITERS = 2
    pool = watcher.Writers()
    threads = {}
    for _ in range(3):
        for cluster in range(6):
            pool.submit(cluster, lambda cluster=cluster: threads.setdefault(cluster, set()).add(threading.current_thread().name))
    assert pool.drain(10)
    assert len({name for names in threads.values() for name in names}) == 2
    assert all(len(names) == 1 for names in threads.values())  # a cluster's changes stay in order on its writer


def test_what_waits_for_room_is_handed_over_on_the_tick_without_another_change():
    """A quiet cluster's backlog (a relist's pages queued while its writer was full) goes to the
    writer once it has room, on the loop's tick: no later change need come to carry it."""
    pool = watcher.Writers(count=1, limit=2)
    blocked, done = threading.Event(), []
    pool.submit(7, blocked.wait)
    watch = watcher.ClusterWatch(7, None, pool=pool)
    for n in range(5):
        watch._submit(lambda n=n: done.append(n))
    assert watch.backlog
    assert watch.tick(time.monotonic()) is False  # no room yet: still due
    assert watch.backlog
    blocked.set()
    deadline = time.monotonic() + 10
    while watch.backlog and time.monotonic() < deadline:
        watch.tick(time.monotonic())
        time.sleep(0.05)
    assert not watch.backlog
    assert pool.drain(10)
    assert done == list(range(5))
