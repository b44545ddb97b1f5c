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
