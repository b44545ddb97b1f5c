"""A generic test base every kind of live event inherits, as tests/api_base.py is for the API: the
real ASGI app, session auth, the Redis channel layer, and everyone of both tenants listening.

Every listener subscribes to every page it may open (the cluster pages, the dashboard feed, the
project page); a subclass says how to cause its event (``cause(world, case)``, which returns the
object told of, or None, and a predicate picking the event's ``data``) and who must hear it in
each case (``heard_by``).  The base checks that exactly those hear it, once each, and that they
are exactly the listeners the engine lets view the object (``can``), as the API would.

The world: cluster A holds project P (namespace web-prod) and project Q (api-prod), cluster B
project batch (batch-prod).  admin: superuser.  owner: owns A.  viewer: member of A and read-only
on P.  member: project-member of P.  second: project-member of Q.  stranger: owns B.  nobody: no
role anywhere.
"""

import itertools
import time

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from clusters.models import Namespace
from clusters.watcher import ClusterWatch
from portal.asgi import application
from portal.events import emit
from portal.permissions import VIEW, can, user_token
from projects.models import Project, ProjectMembership

_markers = itertools.count()
EVERYONE = ("admin", "owner", "viewer", "member", "second", "stranger", "nobody")


def marker(prefix):
    return f"{prefix}-{next(_markers)}"


def session_client(user):
    client = Client()
    client.force_login(user)
    return client


async def listen(user, *topics, client=None):
    """A socket signed in as ``user`` (through ``client``'s session if given), subscribed to ``topics``."""
    client = client or await sync_to_async(session_client)(user)
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    for topic in topics:
        await communicator.send_json_to({"action": "subscribe", "group": topic})
        reply = await communicator.receive_json_from(timeout=5)
        assert reply == {"type": "subscribed", "group": topic}, reply
    return communicator


def send_sentinel(users, topics):
    """An event each of ``users`` hears on any topic it follows: it marks the end of what to read."""
    name = marker("sentinel")
    emit("test.sentinel", {"name": name}, {user_token(user.pk) for user in users}, *topics)
    return name


async def read_until(communicator, sentinel, timeout=10):
    """Everything the socket hears before ``sentinel``."""
    heard = []
    deadline = time.monotonic() + timeout
    while True:
        message = await communicator.receive_json_from(timeout=max(0.1, deadline - time.monotonic()))
        if message.get("event") == "test.sentinel" and message["data"]["name"] == sentinel:
            return heard
        heard.append(message)


class LiveWorld:
    """tests.conftest.World plus a second project in cluster A with its own member."""

    def __init__(self):
        from tests.conftest import World, make_user

        world = World()
        self.__dict__.update(world.__dict__)
        self.second = make_user("second")
        self.second_project = Project.objects.create(cluster=self.cluster, name="api")
        ProjectMembership.objects.create(project=self.second_project, user=self.second, role="project-member")
        self.second_namespace = Namespace.objects.create(cluster=self.cluster, uid="ns-api-1", name="api-prod", project=self.second_project)
        # case -> (cluster, project, namespace)
        self.places = {
            "ours": (self.cluster, self.project, self.namespace),
            "second": (self.cluster, self.second_project, self.second_namespace),
            "theirs": (self.other_cluster, self.other_project, self.other_namespace),
        }

    def user(self, name):
        return getattr(self, name)

    def pages(self, name):
        """The pages ``name`` may open and follows."""
        a, b = f"cluster-{self.cluster.pk}", f"cluster-{self.other_cluster.pk}"
        return {
            "admin": [a, b, "clusters"],
            "owner": [a, "clusters"],
            "viewer": [a, "clusters"],
            "member": [a, "clusters", f"project-{self.project.pk}"],
            "second": [a, f"project-{self.second_project.pk}"],
            "stranger": [b, "clusters"],
            "nobody": ["clusters"],
        }[name]


def watch(cluster):
    """The watcher's handling of one cluster's watch events, fed directly (writes and emits as the
    running watcher does, without a Kubernetes API to read them from)."""
    return ClusterWatch(cluster.pk, None, pool=object())


def watch_event(cluster, resource, kind, name, namespace=None, uid=None):
    metadata = {"name": name, "uid": uid or f"uid-{name}"}
    if namespace is not None:
        metadata["namespace"] = namespace.name
    watch(cluster)._apply(resource, kind, {"metadata": metadata})


class LiveEventTests:
    event = None
    heard_by = {}  # case -> the listeners who must hear it
    check_with_engine = True  # heard by exactly those ``can(user, VIEW, obj)`` allows

    def cause(self, world, case):
        """Make the change; return (the object the event tells of or None, predicate on data)."""
        raise NotImplementedError

    def check_data(self, world, name, case, data):
        """What ``name`` heard of ``case`` (payload checks per listener)."""

    async def test_each_listener_hears_exactly_what_it_may_view(self):
        world = await sync_to_async(LiveWorld)()
        sockets = {name: await listen(world.user(name), *world.pages(name)) for name in EVERYONE}
        try:
            caused = {}
            for case in self.heard_by:
                caused[case] = await sync_to_async(self.cause)(world, case)
            topics = {topic for name in EVERYONE for topic in world.pages(name)}
            sentinel = await sync_to_async(send_sentinel)([world.user(name) for name in EVERYONE], topics)
            heard = {name: await read_until(socket, sentinel) for name, socket in sockets.items()}

            for case, expected in self.heard_by.items():
                obj, match = caused[case]
                got = {}
                for name, messages in heard.items():
                    found = [m for m in messages if m.get("event") == self.event and match(m["data"])]
                    if found:
                        got[name] = found
                assert set(got) == set(expected), f"{self.event} {case}: heard by {sorted(got)}, should be {sorted(expected)}"
                for name, found in got.items():
                    assert len(found) == 1, f"{self.event} {case}: {name} heard it {len(found)} times"
                    self.check_data(world, name, case, found[0]["data"])
                if self.check_with_engine and obj is not None:
                    may_view = await sync_to_async(lambda obj=obj: {n for n in EVERYONE if can(world.user(n), VIEW, obj)})()
                    assert set(expected) == may_view, f"{self.event} {case}: the engine lets {sorted(may_view)} view it"
        finally:
            for socket in sockets.values():
                await socket.disconnect()


class NamespacedInventoryTests(LiveEventTests):
    """Rows inside a namespace (pods, workloads, services, events), from the watcher."""

    resource = None
    kind = "ADDED"
    heard_by = {
        "ours": {"admin", "owner", "viewer", "member"},
        "second": {"admin", "owner", "second"},
        "theirs": {"admin", "stranger"},
    }

    def cause(self, world, case):
        cluster, _, namespace = world.places[case]
        name = marker(self.resource)
        if self.kind == "DELETED":
            watch_event(cluster, self.resource, "ADDED", name, namespace)
        watch_event(cluster, self.resource, self.kind, name, namespace)
        model = self._model()
        obj = model.objects.filter(cluster=cluster, uid=f"uid-{name}").first()
        return obj, lambda data: data.get("name") == name

    def _model(self):
        from clusters.kube.inventory import MODELS

        return MODELS[self.resource]
