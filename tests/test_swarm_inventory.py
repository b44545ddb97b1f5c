"""A Swarm's inventory against a real dockerd (tests/swarm_fixtures.py): what Corral stores equals
what `docker node ls`, `docker service ls` and `docker service ps` say; secrets and configs are kept
as metadata only; a service scaled with the docker CLI reaches the database and a subscribed
websocket within seconds (the engine's event stream, clusters/swarm/watcher.py); and a user who may
not see the cluster, or sees only one project's stack, learns nothing more."""

import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connection

from clusters import sync
from clusters.models import Cluster, ClusterMembership, Namespace, Node, Pod, SwarmObject, Workload
from clusters.swarm.watcher import SwarmWatch
from projects.models import Project, ProjectMembership
from tests.test_websocket import connect
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_TEXT = "s3cret-value-never-stored"
CONFIG_TEXT = "config-value-never-stored"


@pytest.fixture(scope="module")
def swarm_objects(swarm):
    """In the swarm, once for the module: services in the stack "shop" and outside any stack, a
    failing service, a global one, a secret, a config and an overlay network."""
    prefix = f"inv-{uuid.uuid4().hex[:6]}"
    names = {"web": f"{prefix}-web", "solo": f"{prefix}-solo", "broken": f"{prefix}-broken"}
    stack = f"shop-{prefix[-6:]}"
    label = ["--label", f"com.docker.stack.namespace={stack}"]
    swarm.docker("service", "create", "-q", "--detach", "--name", names["web"], "--replicas", "2",
                 "--reserve-memory", "16M", *label, swarm.image)
    swarm.docker("service", "create", "-q", "--detach", "--name", names["solo"], "--mode", "global", swarm.image)
    # Fails once, is replaced once (restart-max-attempts 1), then stays as it is.
    swarm.docker("service", "create", "-q", "--detach", "--name", names["broken"], "--restart-max-attempts", "1",
                 "--restart-delay", "0s", swarm.image, "false")
    _create_from_stdin(swarm, "secret", f"{prefix}-secret", SECRET_TEXT, label)
    _create_from_stdin(swarm, "config", f"{prefix}-config", CONFIG_TEXT, label)
    swarm.docker("network", "create", "--driver", "overlay", *label, f"{prefix}-net")

    def settled():
        states = swarm.docker("service", "ps", *names.values(), "--format", "{{.Name}} {{.CurrentState}}").stdout
        return states.count("Running") == 3 and states.count("Failed") == 2
    wait_for(settled, 60, "the services to settle (web 2 and solo 1 running, broken failed twice)",
             lambda: swarm.docker("service", "ps", *names.values()).stdout)
    yield {"names": names, "stack": stack, "prefix": prefix}
    swarm.docker("service", "rm", *names.values(), check=False)
    swarm.docker("secret", "rm", f"{prefix}-secret", check=False)
    swarm.docker("config", "rm", f"{prefix}-config", check=False)
    swarm.docker("network", "rm", f"{prefix}-net", check=False)


@pytest.fixture
def swarm_world(swarm, swarm_objects):
    """The Swarm as a Corral cluster; its owner, a member of a project that owns the stack, and a
    stranger who owns another cluster."""
    from tests.conftest import make_user

    owner, member, stranger = make_user("swarm-owner"), make_user("swarm-member"), make_user("swarm-stranger")
    cluster = Cluster.objects.create(name="swarm", kind="swarm", driver="imported", state="active", api_endpoint=swarm.host,
                                     credentials=swarm.credentials)
    other = Cluster.objects.create(name="other", driver="imported", state="active")
    ClusterMembership.objects.create(cluster=cluster, user=owner, role="cluster-owner")
    ClusterMembership.objects.create(cluster=other, user=stranger, role="cluster-owner")
    project = Project.objects.create(cluster=cluster, name="shop")
    ProjectMembership.objects.create(project=project, user=member, role="project-member")
    Namespace.objects.create(cluster=cluster, name=swarm_objects["stack"], project=project)  # the project owns the stack
    world = type("SwarmWorld", (), {})()
    world.__dict__.update(swarm=swarm, cluster=cluster, owner=owner, member=member, stranger=stranger, project=project, **swarm_objects)
    return world


def _create_from_stdin(swarm, what, name, text, label):
    import subprocess

    from tools import docker as docker_tool

    subprocess.run([docker_tool.docker_binary(), what, "create", *label, name, "-"], input=text, text=True, check=True,
                   capture_output=True, env={"DOCKER_HOST": swarm.host, "PATH": "/usr/bin:/bin"})


def cli_rows(swarm, *args):
    out = swarm.docker(*args).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def test_inventory_equals_the_docker_cli_and_keeps_no_secret_or_config_data(swarm_world):
    w, swarm = swarm_world, swarm_world.swarm
    counts = sync.sync(w.cluster.pk)
    assert counts["services"] >= 3 and counts["nodes"] == 1

    # docker node ls
    (node_id, hostname, status, availability, manager, engine), = cli_rows(
        swarm, "node", "ls", "--format", "{{.ID}}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}")
    node = Node.objects.get(cluster=w.cluster)
    assert (node.uid, node.name, node.kubelet_version, node.roles) == (node_id, hostname, engine, ["manager"])
    assert node.ready == (status == "Ready") and node.unschedulable == (availability != "Active")
    assert node.details["leader"] == (manager == "Leader") and node.details["availability"] == availability.lower()
    assert node.cpu_allocatable_m > 0 and node.memory_allocatable_bytes > 0

    # docker service ls (every service of the swarm, the other tests' too)
    listed = {row[1]: row for row in cli_rows(swarm, "service", "ls", "--format", "{{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}")}
    stored = {wl.name: wl for wl in Workload.objects.filter(cluster=w.cluster).select_related("namespace")}
    assert set(stored) == set(listed)
    for name, (short_id, _, mode, replicas, image) in listed.items():
        wl = stored[name]
        running, desired = replicas.split(" ")[0].split("/")
        assert wl.kind == "service" and wl.uid.startswith(short_id)
        assert (wl.details["mode"], wl.ready_replicas, wl.desired_replicas, wl.images) == (mode, int(running), int(desired), [image]), name
    assert stored[w.names["web"]].namespace.name == w.stack and stored[w.names["solo"]].namespace.name == "default"
    assert stored[w.names["web"]].details["reservations"]["memory_bytes"] == 16 * 1024 * 1024
    assert stored[w.names["broken"]].ready_replicas < stored[w.names["broken"]].desired_replicas or \
        stored[w.names["broken"]].desired_replicas == 0

    # docker service ps (with the tasks' history: Swarm keeps what it replaced)
    tasks = cli_rows(swarm, "service", "ps", "--no-trunc", "--format", "{{.ID}}\t{{.Name}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}",
                     *w.names.values())
    pods = {p.uid: p for p in Pod.objects.filter(cluster=w.cluster, workload__name__in=list(w.names.values())).select_related("workload", "node")}
    assert set(pods) == {t[0] for t in tasks}
    for task_id, name, node_name, desired, current, error in tasks:
        pod = pods[task_id]
        state = current.split(" ")[0].lower()
        name = name.replace("\\_", "").strip()
        assert pod.name == (name if "." in name else f"{name}.{node_id}") or pod.name.startswith(name), (pod.name, name)
        assert (pod.node_name, pod.node_id, pod.details["desired_state"]) == (node_name, node.pk, desired.lower())
        assert pod.details["state"] == state and pod.ready == (state == "running")
        assert pod.phase == {"running": "Running", "failed": "Failed", "shutdown": "Succeeded", "complete": "Succeeded",
                             "rejected": "Failed"}.get(state, "Pending"), (state, pod.phase)
        assert pod.details["error"] == error.strip('"'), (pod.details, error)
        assert pod.owner_kind == "Service" and pod.workload.name == pod.owner_name
    failed = [p for p in pods.values() if p.workload.name == w.names["broken"] and p.phase == "Failed"]
    assert failed and "non-zero exit (1)" in failed[0].details["error"]

    # networks, secrets, configs: metadata only, in their stack
    objects = {(o.kind, o.name): o for o in SwarmObject.objects.filter(cluster=w.cluster).select_related("namespace")}
    for kind in ("secret", "config", "network"):
        obj = objects[(kind, f"{w.prefix}-{'net' if kind == 'network' else kind}")]
        assert obj.namespace.name == w.stack and obj.uid
    assert ("network", "ingress") in objects and objects[("network", "ingress")].namespace is None
    with connection.cursor() as cursor:
        for table in ("clusters_swarmobject", "clusters_workload", "clusters_pod", "clusters_node", "clusters_namespace"):
            cursor.execute(f"SELECT count(*) FROM {table} WHERE CAST({table}.* AS text) LIKE %s OR CAST({table}.* AS text) LIKE %s",
                           [f"%{SECRET_TEXT}%", f"%{CONFIG_TEXT}%"])
            assert cursor.fetchone()[0] == 0, table

    # a service removed with the CLI goes at the next sync
    swarm.docker("service", "rm", w.names["solo"])
    sync.sync(w.cluster.pk)
    assert not Workload.objects.filter(cluster=w.cluster, name=w.names["solo"]).exists()
    assert not Pod.objects.filter(cluster=w.cluster, owner_name=w.names["solo"]).exists()


async def next_event(communicator, predicate, timeout):
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no matching event within {timeout}s"
        message = await communicator.receive_json_from(timeout=remaining)
        if message.get("type") == "event" and predicate(message):
            return message


async def test_a_service_scaled_with_the_cli_shows_up_live_and_only_to_those_who_may_see_it(swarm_world):
    w = swarm_world
    watch = SwarmWatch(w.cluster.pk, None)
    watch.start()
    try:
        await sync_to_async(wait_for)(watch.following.is_set, 60, "the first full read of the swarm")
        web = await database_sync_to_async(Workload.objects.get)(cluster=w.cluster, name=w.names["web"])
        assert (web.desired_replicas, web.ready_replicas) == (2, 2)

        owner, _, _ = await connect(w.owner)
        member, _, _ = await connect(w.member)
        stranger, _, _ = await connect(w.stranger)
        for communicator in (owner, member):
            await communicator.send_json_to({"action": "subscribe", "group": f"cluster-{w.cluster.pk}"})
            assert (await communicator.receive_json_from())["type"] == "subscribed"
        await stranger.send_json_to({"action": "subscribe", "group": f"cluster-{w.cluster.pk}"})
        assert (await stranger.receive_json_from())["type"] == "error"

        started = time.monotonic()
        await sync_to_async(w.swarm.docker)("service", "scale", "--detach", f"{w.names['web']}=3")
        scaled = lambda m: m["event"] == "workload.updated" and m["data"]["uid"] == web.uid and m["data"]["desired_replicas"] == 3  # noqa: E731
        await next_event(owner, scaled, timeout=10)
        seen = time.monotonic() - started
        running = lambda m: (m["event"] == "workload.updated" and m["data"]["uid"] == web.uid  # noqa: E731
                             and m["data"]["ready_replicas"] == 3)
        await next_event(owner, running, timeout=30)
        # The member's project owns the stack: they hear of it too; never of what lies outside it.
        message = await next_event(member, running, timeout=5)
        assert message["data"]["name"] == w.names["web"]
        assert await database_sync_to_async(lambda: Workload.objects.get(pk=web.pk).ready_replicas)() == 3
        assert seen < 5, f"the scale took {seen:.1f}s to reach the websocket"

        await sync_to_async(w.swarm.docker)("service", "update", "--detach", "--label-add", "touched=1", w.names["broken"])
        while not await member.receive_nothing(timeout=2):  # the member hears nothing of the default stack's services
            message = await member.receive_json_from()
            assert message.get("data", {}).get("name", "").startswith(w.names["web"]) or message["event"].startswith("cluster."), message
        for communicator in (owner, member, stranger):
            await communicator.disconnect()
    finally:
        watch.stop(wait=10)
    assert watch.ended.is_set()



def test_a_tenant_who_may_not_see_the_cluster_sees_nothing_of_it(swarm_world):
    from rest_framework.test import APIClient

    from portal.models import ApiToken

    w = swarm_world
    sync.sync(w.cluster.pk)

    def client(user):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user)[1]}")
        return api

    stranger, member, owner = client(w.stranger), client(w.member), client(w.owner)
    for path in ("nodes", "workloads", "pods", "namespaces", "swarm-objects"):
        url = f"/api/v1/{path}/?cluster={w.cluster.pk}"
        assert stranger.get(url).json()["count"] == 0, path
        assert owner.get(url).json()["count"] > 0, path
    assert stranger.get(f"/api/v1/clusters/{w.cluster.pk}/").status_code == 404
    assert w.cluster.pk not in [c["id"] for c in stranger.get("/api/v1/clusters/").json()["results"]]
    # The project member sees its stack's services, tasks and objects, and nothing outside the stack.
    names = {wl["name"] for wl in member.get(f"/api/v1/workloads/?cluster={w.cluster.pk}").json()["results"]}
    assert names == {w.names["web"]}
    assert {p["namespace"] for p in member.get(f"/api/v1/pods/?cluster={w.cluster.pk}").json()["results"]} == {w.stack}
    assert {o["namespace"] for o in member.get(f"/api/v1/swarm-objects/?cluster={w.cluster.pk}").json()["results"]} == {w.stack}
    # Search across clusters finds nothing of it either.
    assert stranger.get(f"/api/v1/workloads/?search={w.prefix}").json()["count"] == 0


def test_dashboard_cluster_page_and_search_cover_the_swarm_and_show_it_to_no_stranger(swarm_world, client):
    w = swarm_world
    sync.sync(w.cluster.pk)
    web = Workload.objects.get(cluster=w.cluster, name=w.names["web"])
    task = Pod.objects.filter(workload=web).first()
    node = Node.objects.get(cluster=w.cluster)
    client.force_login(w.owner)
    pages = ["/", f"/clusters/{w.cluster.pk}/", f"/search/?q={w.prefix}", f"/workloads/{web.pk}/", f"/pods/{task.pk}/",
             f"/nodes/{node.pk}/", f"/namespaces/{web.namespace_id}/", f"/clusters/{w.cluster.pk}/explore/"]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    assert w.names["web"] in client.get(f"/search/?q={w.prefix}").content.decode()
    assert "Docker Swarm" in client.get(f"/clusters/{w.cluster.pk}/").content.decode()
    # The Kubernetes-only doors say why, for the owner too.
    assert client.post(f"/clusters/{w.cluster.pk}/kubeconfig/").status_code == 404
    assert client.get(f"/api/v1/clusters/{w.cluster.pk}/kubeconfig/").status_code == 400
    client.force_login(w.stranger)
    for url in pages:
        if url != "/" and not url.startswith("/search/"):
            assert client.get(url).status_code == 404, url
    assert w.names["web"] not in client.get(f"/search/?q={w.prefix}").content.decode()
