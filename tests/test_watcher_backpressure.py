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


async def test_a_cluster_woken_for_room_is_not_overtaken_by_a_change_that_comes_meanwhile(monkeypatch):
    """Fairness: a waiter the writer wakes takes the room it was woken for, even when another
    cluster's change arrives between the wake-up and its turn on the event loop (before, that
    change took the room and the waiter went to the back of the line, each time: a probe deletion
    waited minutes behind 500 busy clusters sharing its writer)."""
    monkeypatch.setattr(watcher, "ROOM_RECHECK", 30.0)
    pool = watcher.Writers(count=1, limit=2)
    blocked, done = threading.Event(), []
    pool.submit(1, blocked.wait)
    waiting, later = watcher.ClusterWatch(1, None, pool=pool), watcher.ClusterWatch(5, None, pool=pool)
    for n in range(4):
        waiting._submit(lambda n=n: done.append(("waiting", n)))
    making_room = asyncio.ensure_future(waiting._make_room())
    await asyncio.sleep(0.2)  # it waits for room
    blocked.set()
    time.sleep(0.5)  # the writer takes its queue and wakes the waiter, which cannot run yet (this is its loop)
    later._submit(lambda: done.append(("later", 0)))
    assert later.backlog  # behind the woken cluster, not in the room it was woken for
    await asyncio.wait_for(making_room, 5)
    await asyncio.wait_for(later._make_room(), 5)
    assert await asyncio.to_thread(pool.drain, 10)
    assert done == [("waiting", n) for n in range(4)] + [("later", 0)]
