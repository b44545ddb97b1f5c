"""The live channel, end to end: the real ASGI app, session auth, the Redis channel layer."""

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client

from clusters.events import cluster_changed
from clusters.models import Cluster, ClusterState
from portal.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def _session_cookie(user):
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def connect(user=None):
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if user is not None:
        cookie = await sync_to_async(_session_cookie)(user)
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


def _world():
    from tests.conftest import World

    return World()


def _make_unavailable(cluster_id, error):
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster_id)
        cluster.set_state(ClusterState.UNAVAILABLE, error=error)
        cluster.save()
        cluster_changed(cluster)


async def test_anonymous_connection_is_refused():
    communicator, connected, code = await connect(None)
    assert not connected
    assert code == 4401


async def test_subscriber_gets_the_event_after_commit():
    world = await sync_to_async(_world)()
    communicator, connected, _ = await connect(world.viewer)
    assert connected
    await communicator.send_json_to({"action": "subscribe", "group": f"cluster-{world.cluster.pk}"})
    assert await communicator.receive_json_from() == {"type": "subscribed", "group": f"cluster-{world.cluster.pk}"}

    await sync_to_async(_make_unavailable)(world.cluster.pk, "connection refused")
    message = await communicator.receive_json_from(timeout=5)
    assert message["event"] == "cluster.updated"
    assert message["data"]["state"] == "unavailable"
    assert message["data"]["last_error"] == "connection refused"
    await communicator.disconnect()


async def test_nothing_is_sent_when_the_transaction_rolls_back():
    world = await sync_to_async(_world)()
    communicator, _, _ = await connect(world.owner)
    await communicator.send_json_to({"action": "subscribe", "group": f"cluster-{world.cluster.pk}"})
    await communicator.receive_json_from()

    def change_then_fail():
        try:
            with transaction.atomic():
                _make_unavailable(world.cluster.pk, "x")
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass

    await sync_to_async(change_then_fail)()
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_subscription_without_permission_is_refused():
    world = await sync_to_async(_world)()
    communicator, _, _ = await connect(world.viewer)
    for group in (f"cluster-{world.other_cluster.pk}", "cluster-999999", "admin", "operation-1; DROP"):
        await communicator.send_json_to({"action": "subscribe", "group": group})
        reply = await communicator.receive_json_from()
        assert reply["type"] == "error", group
    # and the refused group really is not joined
    await sync_to_async(_make_unavailable)(world.other_cluster.pk, "down")
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_the_clusters_feed_only_carries_visible_clusters():
    world = await sync_to_async(_world)()
    communicator, _, _ = await connect(world.viewer)
    await communicator.send_json_to({"action": "subscribe", "group": "clusters"})
    assert (await communicator.receive_json_from())["type"] == "subscribed"
    await sync_to_async(_make_unavailable)(world.other_cluster.pk, "down")
    assert await communicator.receive_nothing(timeout=0.5)
    await sync_to_async(_make_unavailable)(world.cluster.pk, "down")
    message = await communicator.receive_json_from(timeout=5)
    assert message["data"]["id"] == world.cluster.pk
    await communicator.disconnect()


async def test_garbage_messages_get_an_error_not_a_disconnect():
    world = await sync_to_async(_world)()
    communicator, _, _ = await connect(world.viewer)
    await communicator.send_to(text_data="{not json")
    assert (await communicator.receive_json_from())["type"] == "error"
    await communicator.send_json_to({"action": "dance"})
    assert (await communicator.receive_json_from())["type"] == "error"
    await communicator.send_json_to(["subscribe"])
    assert (await communicator.receive_json_from())["type"] == "error"
    await communicator.disconnect()
