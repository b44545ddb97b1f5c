"""The live-event channel layer's blocking pops stay inside the Redis client's socket timeout
(portal/channel_layer.py): a quiet socket keeps its connection and loses nothing."""

import asyncio

import pytest
import redis
from channels.layers import get_channel_layer
from django.conf import settings

from portal.channel_layer import RedisChannelLayer


def connections_received(client):
    return client.info("stats")["total_connections_received"]


def quiet_layer(**extra):
    host = {**settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0], "socket_timeout": 2}
    return RedisChannelLayer(hosts=[host], prefix="corral:test-quiet", **extra)


@pytest.mark.parametrize("blocking_pop_seconds, reconnects", [(1, False), (None, True)])
async def test_a_quiet_channel_keeps_its_connection_and_its_next_message(blocking_pop_seconds, reconnects):
    # None: channels_redis' own 5 s pop against a 2 s socket timeout, the race this layer ends.
    layer = quiet_layer(blocking_pop_seconds=blocking_pop_seconds)
    channel = await layer.new_channel()
    receiving = asyncio.ensure_future(layer.receive(channel))
    counter = redis.Redis.from_url(settings.REDIS_URL)  # one connection of its own, made first
    try:
        await asyncio.sleep(0.5)
        before = await asyncio.to_thread(connections_received, counter)
        await asyncio.sleep(4.5)  # more than twice the socket timeout
        after = await asyncio.to_thread(connections_received, counter)
        assert (after > before) is reconnects, f"{after - before} new connections while the channel was quiet"
        await layer.send(channel, {"type": "test.message", "n": 1})
        message = await asyncio.wait_for(receiving, 5)
        assert message == {"type": "test.message", "n": 1}
    finally:
        receiving.cancel()
        counter.close()
        await layer.flush()


def test_the_configured_layer_pops_for_half_the_socket_timeout():
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    assert layer.brpop_timeout * 2 <= settings.REDIS_TIMEOUT


@pytest.mark.parametrize("seconds", [0, 1.5, "2"])
def test_a_bad_blocking_pop_is_refused(seconds):
    with pytest.raises(ValueError, match="blocking_pop_seconds"):
        quiet_layer(blocking_pop_seconds=seconds)


@pytest.mark.django_db(transaction=True)
async def test_one_batch_reaches_hundreds_of_groups_at_once():
    """A batch of changes may reach hundreds of channel groups; sent all at once they would need
    more connections than the Redis client's pool holds (100): portal.events sends a few dozen at a
    time, and every group hears its event."""
    from asgiref.sync import sync_to_async

    from portal import events

    layer = get_channel_layer()
    # Listeners in 5 processes (layers), 50 each: a process's sockets share one Redis list, which
    # holds 100 pending messages (channels_redis' capacity).
    listeners = [RedisChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"]) for _ in range(5)]
    channels = {}
    for n in range(250):
        listener = listeners[n % 5]
        channel = await listener.new_channel()
        await layer.group_add(f"batch-test-{n}", channel)
        channels[f"batch-test-{n}"] = (listener, channel)
    try:
        items = [([group], {"type": "live.event", "id": group, "event": "test.batch", "data": {}}) for group in channels]
        await sync_to_async(events._send_many)(items)
        assert events._outage["until"] == 0.0, "the batch failed and live events went into an outage"
        for group, (listener, channel) in channels.items():
            message = await asyncio.wait_for(listener.receive(channel), 5)
            assert message["id"] == group
    finally:
        for group, (_, channel) in channels.items():
            await layer.group_discard(group, channel)
        for listener in listeners:
            await listener.flush()
