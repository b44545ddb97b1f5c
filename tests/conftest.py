"""Shared fixtures.  The database is the PostgreSQL and the channel layer the Redis that
`make test` starts (or that PORTAL_DATABASE_URL / PORTAL_REDIS_URL name)."""

import time

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from clusters.models import Cluster, ClusterMembership, ClusterState, Namespace
from portal.models import ApiToken, GlobalRole, GlobalRoleBinding
from projects.models import Project, ProjectMembership

pytest_plugins = ["tests.kube_fixtures", "tests.ldap_fixtures", "tests.swarm_fixtures"]


@pytest.fixture(autouse=True)
def _isolated_cache_and_eager_celery(settings):
    from portal.celery import app

    app.conf.task_always_eager = True
    # Password hashing is deliberately slow; tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The tests' receivers (HTTP, SMTP, Alertmanager) listen on loopback, which notifiers may not
    # reach by default (tests/test_notifier_outbound.py tests the defaults).
    settings.NOTIFIER_DENIED_NETWORKS = ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"]
    yield
    app.conf.task_always_eager = False


@pytest.fixture(scope="session", autouse=True)
def _watcher_threads_let_go_of_the_database(django_db_setup):
    """The watcher's writer and listing threads (tests run them in this process) keep their database
    connections while busy and close them once idle for WRITER_IDLE_SECONDS: the test database is
    dropped after that (this fixture, set up after the database, is torn down before it)."""
    yield
    from clusters import watcher

    if watcher._writers is not None or watcher._runtime is not None:
        time.sleep(watcher.WRITER_IDLE_SECONDS + 0.5)


@pytest.fixture(autouse=True)
def _channel_layer_receive_state_per_test():
    """Each async test runs on an event loop of its own, but the channel layer is one object for
    the process.  channels_redis keeps per-channel asyncio locks for receiving, and a socket closed
    while its consumer waits on one leaves the lock's waiter count raised for good (a known
    channels_redis bug, django/channels_redis#313): the lock, bound to the finished test's loop,
    then fails every later test's receive ("bound to a different event loop").  A server runs one
    loop for its life, where this is harmless; between tests the receiving state starts afresh."""
    yield
    from channels import DEFAULT_CHANNEL_LAYER
    from channels.layers import channel_layers

    layer = channel_layers.backends.get(DEFAULT_CHANNEL_LAYER)
    if layer is None or not hasattr(layer, "receive_clean_locks"):
        return
    from channels_redis.core import ChannelLock

    layer.receive_clean_locks = ChannelLock()
    layer.receive_buffer.clear()
    layer.receive_count, layer.receive_lock, layer.receive_event_loop = 0, None, None


def make_user(username, **extra):
    return User.objects.create_user(username=username, password=f"{username}-password-1", email=f"{username}@example.com", **extra)


def make_cluster(name, state=ClusterState.ACTIVE, **extra):
    return Cluster.objects.create(name=name, driver="sandbox", state=state, **extra)


class World:
    """Two tenants.  Cluster A: owner (cluster-owner, may create clusters), viewer (cluster-member and read-only on
    project P), member (project-member of P).  Cluster B: stranger (cluster-owner)."""

    def __init__(self):
        self.admin = User.objects.create_superuser("root", "root@example.com", "root-password-1")
        self.owner = make_user("owner", is_staff=True)
        self.viewer = make_user("viewer", is_staff=True)
        self.member = make_user("member")
        self.stranger = make_user("stranger", is_staff=True)
        self.nobody = make_user("nobody")
        # The platform team's operator may create clusters, sandboxes included (Rancher's
        # "Create new clusters"); nobody else here may.
        for role in (GlobalRole.CREATE_CLUSTERS, GlobalRole.USE_SANDBOX):
            GlobalRoleBinding.objects.create(user=self.owner, role=role)
        self.cluster = make_cluster("alpha")
        self.other_cluster = make_cluster("bravo")
        ClusterMembership.objects.create(cluster=self.cluster, user=self.owner, role="cluster-owner")
        ClusterMembership.objects.create(cluster=self.cluster, user=self.viewer, role="cluster-member")
        ClusterMembership.objects.create(cluster=self.other_cluster, user=self.stranger, role="cluster-owner")
        self.project = Project.objects.create(cluster=self.cluster, name="web")
        self.other_project = Project.objects.create(cluster=self.other_cluster, name="batch")
        ProjectMembership.objects.create(project=self.project, user=self.viewer, role="read-only")
        ProjectMembership.objects.create(project=self.project, user=self.member, role="project-member")
        self.namespace = Namespace.objects.create(cluster=self.cluster, uid="ns-web-1", name="web-prod", project=self.project)
        self.other_namespace = Namespace.objects.create(
            cluster=self.other_cluster, uid="ns-batch-1", name="batch-prod", project=self.other_project
        )

    def client(self, user, read_only=False):
        client = APIClient()
        if user is not None:
            _, secret = ApiToken.issue(user, read_only=read_only)
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client


@pytest.fixture
def world(db):
    return World()


@pytest.fixture
def group(db):
    return Group.objects.create(name="platform-team")
