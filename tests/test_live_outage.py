"""While Redis cannot be reached, a live event costs one failed attempt every couple of seconds,
not the client's retries on every event: the watcher's writer threads, which send them after each
change, keep writing at their pace through a Redis outage (tests/faults/test_portal_faults.py kills
the real redis-server)."""

import asyncio
import logging

import pytest
from channels_redis.core import RedisChannelLayer

from portal import events
from tools.services import free_port


@pytest.fixture
def dead_redis(monkeypatch):
    layer = RedisChannelLayer(hosts=[{"address": f"redis://127.0.0.1:{free_port()}/0", "socket_connect_timeout": 1}])
    calls = []
    real = layer.group_send

    async def counted(group, message):
        calls.append(group)
        await real(group, message)

    layer.group_send = counted
    monkeypatch.setattr(events, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(events, "_outage", {"until": 0.0, "dropped": 0})
    return calls


def test_events_are_dropped_at_once_while_the_channel_layer_is_down_and_flow_again(dead_redis, monkeypatch, caplog):
    clock = [1000.0]
    monkeypatch.setattr(events.time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="portal.events"):
        for _ in range(20):
            events._send(["cluster-1.u1"], {"type": "live.event", "event": "pod.updated"})
    assert len(dead_redis) == 1  # one attempt; the other 19 were dropped without trying
    assert events._outage["dropped"] == 20
    assert sum("live events are dropped" in r.message for r in caplog.records) == 1

    clock[0] += events.OUTAGE_RETRY_SECONDS + 0.1
    events._send(["cluster-1.u1"], {"type": "live.event", "event": "pod.updated"})
    assert len(dead_redis) == 2  # tried again after the pause


@pytest.mark.django_db(transaction=True)
async def test_when_the_layer_answers_again_every_open_socket_is_told_to_catch_up(monkeypatch):
    """A page that reconnected before this process could send again would never hear of what was
    dropped in between: the probe's first message that gets through tells every socket so (and
    nothing else: it is the same for every tenant)."""
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer

    from tests.conftest import make_user
    from tests.live_base import listen

    dead = RedisChannelLayer(hosts=[{"address": f"redis://127.0.0.1:{free_port()}/0", "socket_connect_timeout": 1}])
    current = [dead]
    monkeypatch.setattr(events, "get_channel_layer", lambda: current[0])
    monkeypatch.setattr(events, "_outage", {"until": 0.0, "dropped": 0})
    await sync_to_async(events._send)(["cluster-1.u1"], {"type": "live.event", "event": "pod.updated"})
    assert events._outage["until"] > 0 and events._outage["dropped"] == 1

    socket = await listen(await sync_to_async(make_user)("watcher"))  # opened while this process is still cut off
    try:
        current[0] = get_channel_layer()  # Redis answers again; nothing else is sent
        message = await socket.receive_json_from(timeout=3 * events.OUTAGE_RETRY_SECONDS + 2)
        assert message == {"type": "missed"}
        for _ in range(50):  # the probe ends the outage just after its send returns
            if events._outage == {"until": 0.0, "dropped": 0}:
                break
            await asyncio.sleep(0.02)
        assert events._outage == {"until": 0.0, "dropped": 0}
    finally:
        await socket.disconnect()
