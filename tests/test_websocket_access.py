"""An open socket loses what its user loses: a removed membership, a group left, a deactivation,
a sign-out.  The first event after the change is already not delivered."""

import time

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group

from clusters.models import ClusterMembership
from portal import consumers
from portal.models import GlobalRole, GlobalRoleBinding
from projects.models import ProjectMembership
from tests.live_base import LiveWorld, listen, marker, read_until, send_sentinel, watch_event

pytestmark = pytest.mark.django_db(transaction=True)


def pod_in(world, case):
    """A pod appears in the namespace of ``case``; its name."""
    cluster, _, namespace = world.places[case]
    name = marker("pod")
    watch_event(cluster, "pods", "ADDED", name, namespace)
    return name


def node_in(world):
    name = marker("node")
    watch_event(world.cluster, "nodes", "ADDED", name)
    return name


def names(messages):
    return [m["data"].get("name") for m in messages if m.get("type") == "event"]


async def hears(socket, user, topics, action):
    """What ``socket`` hears of ``action()`` (a list of names it returns), up to a sentinel."""
    caused = await sync_to_async(action)()
    sentinel = await sync_to_async(send_sentinel)([user], topics)
    heard = names(await read_until(socket, sentinel))
    return [name for name in caused if name in heard]


async def expect_unsubscribed(socket, topic, within=5):
    started = time.monotonic()
    message = await socket.receive_json_from(timeout=within)
    assert message["type"] == "unsubscribed" and message["group"] == topic and message["reason"], message
    assert time.monotonic() - started < within


async def expect_closed(socket, code, reason_part, within=5):
    message = await socket.receive_json_from(timeout=within)
    assert message == {"type": "closed", "code": code, "reason": message["reason"]}, message
    assert reason_part in message["reason"]
    assert await socket.receive_output(timeout=within) == {"type": "websocket.close", "code": code, "reason": message["reason"]}


async def world_and_cluster_page():
    world = await sync_to_async(LiveWorld)()
    return world, f"cluster-{world.cluster.pk}"


async def test_removed_project_member_stops_hearing_before_the_next_event():
    world, page = await world_and_cluster_page()
    socket = await listen(world.member, page)
    assert await hears(socket, world.member, [page], lambda: [pod_in(world, "ours")])

    def remove_then_change():
        ProjectMembership.objects.filter(user=world.member).delete()
        return [pod_in(world, "ours")]  # at once: no time for the socket to catch up

    caused = await sync_to_async(remove_then_change)()
    # The only project role was what let them see the cluster: the page is dropped, nothing leaks.
    await expect_unsubscribed(socket, page)
    assert await socket.receive_nothing(timeout=0.5)
    assert caused
    await socket.disconnect()


async def test_cluster_member_who_leaves_a_project_keeps_the_cluster_but_not_its_pods():
    world, page = await world_and_cluster_page()
    socket = await listen(world.viewer, page)
    assert len(await hears(socket, world.viewer, [page], lambda: [pod_in(world, "ours"), node_in(world)])) == 2

    def remove_then_change():
        ProjectMembership.objects.filter(user=world.viewer).delete()
        return [pod_in(world, "ours"), node_in(world)]

    caused = await sync_to_async(remove_then_change)()
    sentinel = await sync_to_async(send_sentinel)([world.viewer], [page])
    heard = names(await read_until(socket, sentinel))
    assert caused[0] not in heard  # the pod of the project they left
    assert caused[1] in heard  # the node: still a member of the cluster
    await socket.disconnect()


async def test_a_new_membership_is_heard_without_subscribing_again():
    world, page = await world_and_cluster_page()
    socket = await listen(world.viewer, page)
    assert not await hears(socket, world.viewer, [page], lambda: [pod_in(world, "second")])
    await sync_to_async(ProjectMembership.objects.create)(project=world.second_project, user=world.viewer, role="read-only")
    deadline = time.monotonic() + 5
    while not await hears(socket, world.viewer, [page], lambda: [pod_in(world, "second")]):
        assert time.monotonic() < deadline, "the new role was not heard within 5 s"
    await socket.disconnect()


async def test_deactivated_user_is_closed_with_a_reason():
    world, page = await world_and_cluster_page()
    socket = await listen(world.owner, page)

    def deactivate_then_change():
        world.owner.is_active = False
        world.owner.save()
        return pod_in(world, "ours")

    await sync_to_async(deactivate_then_change)()
    await expect_closed(socket, consumers.CLOSE_NO_ACCESS, "deactivated")
    await socket.disconnect()


async def test_silent_deactivation_is_caught_by_the_periodic_recheck(monkeypatch):
    # The directory refresh deactivates with a queryset update, which sends no signal.
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0.5)
    world, page = await world_and_cluster_page()
    socket = await listen(world.owner, page)
    await sync_to_async(lambda: type(world.owner).objects.filter(pk=world.owner.pk).update(is_active=False))()
    await expect_closed(socket, consumers.CLOSE_NO_ACCESS, "deactivated", within=3)
    await socket.disconnect()


async def test_signing_out_closes_that_sessions_socket_only():
    world, page = await world_and_cluster_page()
    from tests.live_base import session_client

    client = await sync_to_async(session_client)(world.owner)
    leaving = await listen(world.owner, page, client=client)
    staying = await listen(world.owner, page)
    response = await sync_to_async(client.post)("/logout/")
    assert response.status_code in (200, 302)
    await expect_closed(leaving, consumers.CLOSE_SIGNED_OUT, "signed out")
    assert await hears(staying, world.owner, [page], lambda: [pod_in(world, "ours")])
    await leaving.disconnect()
    await staying.disconnect()


def _group_member(world, role_binding):
    """A user who holds their role only through the group "platform-team"."""
    from tests.conftest import make_user

    team = Group.objects.create(name="platform-team")
    dev = make_user("dev")
    dev.groups.add(team)
    role_binding(team)
    return team, dev


@pytest.mark.parametrize("how", ["user.groups.remove", "group.user_set.remove", "user.groups.clear", "binding deleted", "group deleted"])
async def test_a_role_held_through_a_group_is_lost_with_the_group(how):
    world, page = await world_and_cluster_page()
    team, dev = await sync_to_async(_group_member)(
        world, lambda team: ProjectMembership.objects.create(project=world.project, group=team, role="project-member")
    )
    socket = await listen(dev, page)
    assert await hears(socket, dev, [page], lambda: [pod_in(world, "ours")])

    def lose_then_change():
        if how == "user.groups.remove":
            dev.groups.remove(team)
        elif how == "group.user_set.remove":
            team.user_set.remove(dev)
        elif how == "user.groups.clear":
            dev.groups.clear()
        elif how == "binding deleted":
            ProjectMembership.objects.filter(group=team).delete()
        else:
            team.delete()
        return pod_in(world, "ours")

    await sync_to_async(lose_then_change)()
    await expect_unsubscribed(socket, page)
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()


async def test_cluster_role_through_a_group_and_a_changed_role():
    world, page = await world_and_cluster_page()
    team, dev = await sync_to_async(_group_member)(
        world, lambda team: ClusterMembership.objects.create(cluster=world.cluster, group=team, role="cluster-owner")
    )
    socket = await listen(dev, page)
    assert await hears(socket, dev, [page], lambda: [pod_in(world, "second")])

    def demote_then_change():
        binding = ClusterMembership.objects.get(group=team)
        binding.role = "cluster-member"
        binding.save()
        return [pod_in(world, "second")]

    assert not await hears(socket, dev, [page], demote_then_change)  # a cluster member: no project pods
    # and still the cluster's basics, through the member role (joined as soon as the socket hears)
    deadline = time.monotonic() + 5
    while not await hears(socket, dev, [page], lambda: [node_in(world)]):
        assert time.monotonic() < deadline, "nodes not heard as a cluster member within 5 s"
    assert not await hears(socket, dev, [page], lambda: [pod_in(world, "second")])
    await socket.disconnect()


async def test_global_administrator_binding_removed():
    world = await sync_to_async(LiveWorld)()
    page = f"cluster-{world.other_cluster.pk}"
    await sync_to_async(GlobalRoleBinding.objects.create)(user=world.nobody, role=GlobalRole.ADMINISTRATOR)
    socket = await listen(world.nobody, page)
    assert await hears(socket, world.nobody, [page], lambda: [pod_in(world, "theirs")])

    def remove_then_change():
        GlobalRoleBinding.objects.filter(user=world.nobody).delete()
        return pod_in(world, "theirs")

    await sync_to_async(remove_then_change)()
    await expect_unsubscribed(socket, page)
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()


async def test_operation_page_of_someone_else_cannot_be_followed():
    from portal import operations
    from tests.test_websocket_events import _Task

    world = await sync_to_async(LiveWorld)()
    op = await sync_to_async(operations.start)("sync", _Task, cluster=world.cluster, user=world.admin)
    socket = await listen(world.owner, f"operation-{op.pk}")  # an owner of its cluster may
    for user in (world.member, world.viewer, world.stranger):
        other = await listen(user)
        await other.send_json_to({"action": "subscribe", "group": f"operation-{op.pk}"})
        assert (await other.receive_json_from())["type"] == "error"
        await other.disconnect()
    await socket.disconnect()


def test_rechecking_a_dashboard_costs_a_few_queries_whatever_the_number_of_clusters(django_assert_max_num_queries):
    from portal import permissions
    from tests.conftest import make_cluster

    world = LiveWorld()
    clusters = [make_cluster(f"many-{i}") for i in range(25)]
    for cluster in clusters:
        ClusterMembership.objects.create(cluster=cluster, user=world.viewer, role="cluster-member")
    topics = ["clusters", f"project-{world.project.pk}", *[f"cluster-{c.pk}" for c in [world.cluster, *clusters]]]
    with django_assert_max_num_queries(8):
        user = type(world.viewer).objects.get(pk=world.viewer.pk)
        groups = consumers.topic_groups(user, topics, permissions.entitlements(user))
    assert all(groups[topic] for topic in topics)
    assert f"cluster-{clusters[0].pk}.cluster-{clusters[0].pk}.cluster-member" in groups[f"cluster-{clusters[0].pk}"]
    assert not any(f"cluster-{clusters[1].pk}" in group for group in groups[f"cluster-{clusters[0].pk}"])
