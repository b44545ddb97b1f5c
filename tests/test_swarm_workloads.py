"""Swarm services and stacks through the workload API, on a real swarm (tests/swarm_fixtures.py):
deploy, scale, a killed task replaced by Swarm, image update, a stack from a compose file; projects
own stacks, members see and change only their project's, and a project's pool bounds the
reservations of its services.

Published ports: the test dockerd runs without iptables (it shares the host's firewall with other
runs), so the routing mesh cannot forward a published port here.  The walk-through checks that the
port is published (the engine's endpoint and Corral's row say so) and fetches HTTP from a service
on the host network, deployed through the same endpoint."""

import urllib.request
from contextlib import closing

import pytest

from clusters.models import Cluster, ClusterMembership, Namespace, Pod, Workload
from clusters.swarm import inventory
from clusters.swarm.client import docker_client
from portal.models import AuditEvent
from projects.models import Project, ProjectMembership
from tests.conftest import make_user
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

STACK_LABEL = "com.docker.stack.namespace"


class Tenants:
    def __init__(self, swarm):
        from rest_framework.test import APIClient

        from portal.models import ApiToken

        self.swarm = swarm
        self.owner = make_user("swarm-owner")
        self.alice = make_user("alice")  # member of project shop
        self.bob = make_user("bob")  # member of project batch
        self.cluster = Cluster.objects.create(name="swarm-one", kind="swarm", driver="imported", state="active",
                                              api_endpoint=swarm.host, credentials=swarm.credentials)
        ClusterMembership.objects.create(cluster=self.cluster, user=self.owner, role="cluster-owner")
        self.shop = Project.objects.create(cluster=self.cluster, name="shop")
        self.batch = Project.objects.create(cluster=self.cluster, name="batch")
        ProjectMembership.objects.create(project=self.shop, user=self.alice, role="project-member")
        ProjectMembership.objects.create(project=self.batch, user=self.bob, role="project-member")
        self._clients = {}
        for user in (self.owner, self.alice, self.bob):
            client = APIClient()
            _, secret = ApiToken.issue(user)
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
            self._clients[user.pk] = client

    def api(self, user):
        return self._clients[user.pk]

    def deploy(self, user, **body):
        return self.api(user).post("/api/v1/workloads/", {"cluster": self.cluster.pk, **body}, format="json")


@pytest.fixture
def tenants(swarm):
    swarm.remove_all_services()
    yield Tenants(swarm)
    swarm.remove_all_services()


def engine_service(swarm, name):
    with closing(swarm.client()) as client:
        found = client.services.list(filters={"name": name})
        return next((s.attrs for s in found if s.attrs["Spec"]["Name"] == name), None)


def running_tasks(swarm, service_id):
    with closing(swarm.client()) as client:
        tasks = client.api.tasks(filters={"service": service_id, "desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def test_walkthrough_deploy_scale_kill_update_publish(tenants, swarm):
    t = tenants
    port = swarm.free_port()
    response = t.deploy(t.alice, namespace="front", project=t.shop.pk, name="web", image=swarm.image, replicas=1,
                        ports=[{"target": 8080, "published": port}], env=[{"name": "MODE", "value": "demo"}],
                        resources={"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                        constraints=["node.role==manager"], update_config={"parallelism": 1, "delay": "1s", "order": "start-first"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["name"], body["namespace"], body["desired_replicas"]) == ("service", "front_web", "front", 1)
    spec = engine_service(swarm, "front_web")["Spec"]
    assert spec["Labels"][STACK_LABEL] == "front" and spec["Labels"]["corral.io/project"] == str(t.shop.pk)
    assert spec["TaskTemplate"]["ContainerSpec"]["Env"] == ["MODE=demo"]
    assert spec["TaskTemplate"]["Resources"]["Reservations"] == {"NanoCPUs": 50_000_000, "MemoryBytes": 16 * 2 ** 20}
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.role==manager"]
    assert spec["UpdateConfig"]["Order"] == "start-first"
    # The published port, as the engine and Corral record it.
    assert [(p["TargetPort"], p["PublishedPort"]) for p in spec["EndpointSpec"]["Ports"]] == [(8080, port)]
    workload = Workload.objects.get(pk=body["id"])
    assert workload.namespace.project == t.shop  # the new stack belongs to the project it was started in
    assert [(p["target"], p["published"]) for p in workload.details["ports"]] == [(8080, port)]

    response = t.api(t.alice).post(f"/api/v1/workloads/{workload.pk}/scale/", {"replicas": 3}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["desired_replicas"] == 3
    tasks = wait_for(lambda: (lambda ts: ts if len(ts) == 3 else None)(running_tasks(swarm, workload.uid)), 60, "3 running tasks")

    # Kill one task's container: Swarm replaces the task with a new one.
    victim = tasks[0]
    with closing(swarm.client()) as client:
        client.containers.get(victim["Status"]["ContainerStatus"]["ContainerID"]).kill()
    replaced = wait_for(lambda: (lambda ts: ts if len(ts) == 3 and victim["ID"] not in {x["ID"] for x in ts} else None)(
        running_tasks(swarm, workload.uid)), 60, "Swarm to replace the killed task")
    assert {x["Slot"] for x in replaced} == {1, 2, 3}
    # Corral's inventory (a resync here; the watcher does it live) shows the new task running and the killed one not.
    with closing(docker_client(t.cluster.credentials)) as client:
        inventory.sync_inventory(t.cluster, client)
    tasks_stored = dict(Pod.objects.filter(workload=workload).values_list("uid", "phase"))
    assert all(tasks_stored.get(x["ID"]) == "Running" for x in replaced), tasks_stored
    assert tasks_stored.get(victim["ID"]) != "Running"

    # A new image, rolled out by the service's update config.
    swarm.docker("tag", swarm.image, "corral-test/busybox-httpd:2")
    response = t.api(t.alice).post(f"/api/v1/workloads/{workload.pk}/image/", {"image": "corral-test/busybox-httpd:2"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["images"] == ["corral-test/busybox-httpd:2"]
    wait_for(lambda: (lambda ts: len(ts) == 3 and all(x["Spec"]["ContainerSpec"]["Image"].startswith("corral-test/busybox-httpd:2")
                                                       for x in ts))(running_tasks(swarm, workload.uid)), 90, "the rolling update")

    # An HTTP answer from a service deployed the same way (on the host network: see the module's note).
    http_port = swarm.free_port()
    response = t.deploy(t.alice, namespace="front", name="api", image=swarm.image, networks=["host"],
                        command=["httpd", "-f", "-p", str(http_port), "-h", "/www"])
    assert response.status_code == 201, response.content

    def fetch():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/", timeout=2) as answer:
                return answer.read().decode()
        except OSError:
            return None

    assert "corral swarm test" in wait_for(fetch, 60, "the service's HTTP answer")

    # Removal, recorded.
    assert t.api(t.alice).delete(f"/api/v1/workloads/{workload.pk}/").status_code == 204
    assert engine_service(swarm, "front_web") is None
    assert not Workload.objects.filter(pk=workload.pk).exists()
    assert set(AuditEvent.objects.filter(object_type="clusters.workload").values_list("action", flat=True)) >= {"create", "action", "delete"}


COMPOSE = """
services:
  web:
    image: {image}
    deploy:
      replicas: 2
      resources:
        reservations: {{cpus: "0.1", memory: 16M}}
        limits: {{memory: 64M}}
      update_config: {{parallelism: 1, delay: 2s, order: start-first}}
      placement:
        constraints: ["node.role==manager"]
    environment:
      MODE: prod
    healthcheck:
      test: ["CMD", "true"]
      interval: 5s
  worker:
    image: {image}
    command: ["sleep", "3600"]
    labels: {{tier: back}}
"""


def test_stack_from_compose_file_deployed_and_removed(tenants, swarm):
    t = tenants
    url = f"/api/v1/clusters/{t.cluster.pk}/stacks/"
    response = t.api(t.alice).post(url, {"name": "market", "project": t.shop.pk, "compose": COMPOSE.format(image=swarm.image)}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert sorted(body["created"]) == ["market_web", "market_worker"] and body["networks"] == ["market_default"]
    web = engine_service(swarm, "market_web")["Spec"]
    assert web["Labels"][STACK_LABEL] == "market" and web["Mode"] == {"Replicated": {"Replicas": 2}}
    assert web["TaskTemplate"]["Resources"]["Reservations"] == {"NanoCPUs": 100_000_000, "MemoryBytes": 16 * 2 ** 20}
    assert web["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Interval"] == 5 * 10 ** 9
    assert web["UpdateConfig"]["Delay"] == 2 * 10 ** 9
    worker = engine_service(swarm, "market_worker")["Spec"]
    assert worker["TaskTemplate"]["ContainerSpec"]["Args"] == ["sleep", "3600"]
    assert worker["TaskTemplate"]["ContainerSpec"]["Labels"]["tier"] == "back"
    assert Namespace.objects.get(cluster=t.cluster, name="market").project == t.shop
    assert set(Workload.objects.filter(namespace__name="market").values_list("name", flat=True)) == {"market_web", "market_worker"}

    # Another project's member cannot remove it (it does not exist for them), nor deploy into it.
    assert t.api(t.bob).delete(f"{url}market/").status_code == 404
    response = t.api(t.bob).post(url, {"name": "market", "project": t.batch.pk, "compose": COMPOSE.format(image=swarm.image)}, format="json")
    assert response.status_code == 400 and "name" in response.json()

    assert t.api(t.alice).delete(f"{url}market/").status_code == 204
    with closing(swarm.client()) as client:
        assert client.services.list(filters={"label": f"{STACK_LABEL}=market"}) == []
        wait_for(lambda: client.networks.list(filters={"label": f"{STACK_LABEL}=market"}) == [], 30, "the stack's network to go")
    assert not Workload.objects.filter(namespace__name="market").exists()


def test_member_cannot_see_or_change_another_projects_service(tenants, swarm):
    t = tenants
    response = t.deploy(t.alice, namespace="front", project=t.shop.pk, name="web", image=swarm.image)
    assert response.status_code == 201, response.content
    ours = response.json()["id"]
    bob = t.api(t.bob)
    assert [w["id"] for w in bob.get("/api/v1/workloads/", {"cluster": t.cluster.pk}).json()["results"]] == []
    assert bob.get(f"/api/v1/workloads/{ours}/").status_code == 404
    assert bob.post(f"/api/v1/workloads/{ours}/scale/", {"replicas": 3}, format="json").status_code == 404
    assert bob.post(f"/api/v1/workloads/{ours}/image/", {"image": "busybox:evil"}, format="json").status_code == 404
    assert bob.delete(f"/api/v1/workloads/{ours}/").status_code == 404
    # Nor deploy into its stack, or start a stack of the same name.
    response = t.deploy(t.bob, namespace="front", name="sneak", image=swarm.image)
    assert response.status_code == 400 and "namespace" in response.json()
    response = t.deploy(t.bob, namespace="front", project=t.batch.pk, name="sneak", image=swarm.image)
    assert response.status_code == 400 and "namespace" in response.json()
    # Nor into a project not theirs (which does not exist for them).
    response = t.deploy(t.bob, namespace="elsewhere", project=t.shop.pk, name="sneak", image=swarm.image)
    assert response.status_code == 400 and "project" in response.json()
    assert engine_service(swarm, "front_sneak") is None and engine_service(swarm, "elsewhere_sneak") is None
    assert engine_service(swarm, "front_web")["Spec"]["Mode"] == {"Replicated": {"Replicas": 1}}
    # The cluster's owner sees it; a read-only member of its project sees it but cannot change it.
    assert t.api(t.owner).get(f"/api/v1/workloads/{ours}/").status_code == 200
    reader = make_user("reader")
    ProjectMembership.objects.create(project=t.shop, user=reader, role="read-only")
    from rest_framework.test import APIClient

    reading = APIClient()
    reading.force_authenticate(reader)
    assert reading.get(f"/api/v1/workloads/{ours}/").status_code == 200
    assert reading.post(f"/api/v1/workloads/{ours}/scale/", {"replicas": 2}, format="json").status_code == 403
    assert reading.delete(f"/api/v1/clusters/{t.cluster.pk}/stacks/front/").status_code == 403
    # The same in the pages and the admin.
    from django.test import Client

    pages = Client()
    pages.force_login(t.alice)
    assert pages.get(f"/workloads/{ours}/").status_code == 200
    t.bob.is_staff = True
    t.bob.save()
    pages.force_login(t.bob)
    assert pages.get(f"/workloads/{ours}/").status_code == 404
    listing = pages.get("/admin/clusters/workload/")
    assert listing.status_code == 200 and b"front_web" not in listing.content
    assert pages.get(f"/admin/clusters/workload/{ours}/change/").status_code in (302, 404)


def test_project_pool_bounds_reservations_on_deploy_and_scale(tenants, swarm):
    t = tenants
    t.batch.resource_quota = {"requests.cpu": "500m", "pods": "10"}
    t.batch.save()
    resources = {"requests": {"cpu": "200m"}}
    response = t.deploy(t.bob, namespace="jobs", project=t.batch.pk, name="crunch", image=swarm.image, replicas=2, resources=resources)
    assert response.status_code == 201, response.content
    workload = response.json()["id"]
    response = t.api(t.bob).post(f"/api/v1/workloads/{workload}/scale/", {"replicas": 3}, format="json")
    assert response.status_code == 400
    message = response.json()["replicas"][0]
    assert "requests.cpu: 600m would be reserved, 100m more than the pool of 500m" in message, message
    assert engine_service(swarm, "jobs_crunch")["Spec"]["Mode"] == {"Replicated": {"Replicas": 2}}
    # A second service that does not fit is not created; one that fits is.
    response = t.deploy(t.bob, namespace="jobs", name="more", image=swarm.image, replicas=1, resources={"requests": {"cpu": "200m"}})
    assert response.status_code == 400 and "100m more than the pool" in response.json()["replicas"][0]
    assert engine_service(swarm, "jobs_more") is None
    compose = f"services:\n  big:\n    image: {swarm.image}\n    deploy:\n      resources:\n        reservations: {{cpus: '0.2'}}\n"
    response = t.api(t.bob).post(f"/api/v1/clusters/{t.cluster.pk}/stacks/", {"name": "jobs", "compose": compose}, format="json")
    assert response.status_code == 400 and "100m more than the pool" in response.json()["compose"][0]
    assert engine_service(swarm, "jobs_big") is None
    assert t.api(t.bob).post(f"/api/v1/workloads/{workload}/scale/", {"replicas": 1}, format="json").status_code == 200
    # The pool bounds services, not shares given to stacks: it can be changed with stacks in the project.
    response = t.api(t.owner).patch(f"/api/v1/projects/{t.batch.pk}/", {"resource_quota": {"requests.cpu": "1", "pods": "10"}}, format="json")
    assert response.status_code == 200, response.content
    t.batch.refresh_from_db()
    assert t.batch.sync_state == "in-sync", t.batch.sync_error  # nothing to reconcile in a swarm


@pytest.mark.parametrize("compose, field", [
    ("services:\n  web:\n    image: x\n    volumes: ['/a:/b']\n", "services.web.volumes"),
    ("services:\n  web:\n    image: x\n    deploy:\n      restart_policy: {condition: any}\n", "services.web.deploy.restart_policy"),
    ("secrets: {}\nservices:\n  web:\n    image: x\n", "secrets"),
    ("services:\n  web:\n    image: x\n    ports: ['127.0.0.1:80:80']\n", "services.web.ports[0]"),
    ("services:\n  web:\n    deploy: {replicas: 2}\n", "services.web.image"),
    ("services:\n  web:\n    image: x\n    deploy: {replicas: many}\n", "services.web.deploy.replicas"),
    ("services: [web]\n", "services"),
    ("services:\n  web:\n    image: x\n    networks: [back]\n", "services.web.networks"),
    ("services:\n  web:\n    image: x\nnetworks:\n  back: {driver: bridge}\n", "networks.back.driver"),
    ("services:\n  web:\n    image: x\n    healthcheck: {interval: soon}\n", "services.web.healthcheck.interval"),
    ("services:\n  web: {image: x\n", "compose"),
])
def test_unsupported_or_bad_compose_is_a_400_naming_the_key(tenants, swarm, compose, field):
    t = tenants
    response = t.api(t.alice).post(f"/api/v1/clusters/{t.cluster.pk}/stacks/", {"name": "bad", "project": t.shop.pk, "compose": compose},
                                   format="json")
    assert response.status_code == 400, response.content
    assert response.json()["compose"][0].startswith(f"{field}:"), response.json()
    assert not Namespace.objects.filter(cluster=t.cluster, name="bad").exists()
    with closing(swarm.client()) as client:
        assert client.services.list(filters={"label": f"{STACK_LABEL}=bad"}) == []


def test_bad_service_input_is_a_400_naming_the_field(tenants, swarm):
    t = tenants
    for body, field in (
        ({"namespace": "front", "project": t.shop.pk, "name": "Web!", "image": swarm.image}, "name"),
        ({"namespace": "front", "project": t.shop.pk, "name": "web", "image": swarm.image, "ports": ["http"]}, "ports"),
        ({"namespace": "front", "project": t.shop.pk, "name": "web", "image": swarm.image, "resources": {"requests": {"cpu": "lots"}}}, "resources"),
        ({"namespace": "front", "project": t.shop.pk, "name": "web", "image": swarm.image, "mode": "global", "replicas": 2}, "replicas"),
        ({"namespace": "front", "project": t.shop.pk, "name": "web", "image": swarm.image, "update_config": {"order": "sideways"}}, "update_config"),
        ({"namespace": "front", "project": t.shop.pk, "name": "web", "image": swarm.image, "labels": {STACK_LABEL: "other"}}, "labels"),
        ({"namespace": "Not A Stack", "project": t.shop.pk, "name": "web", "image": swarm.image}, "namespace"),
        ({"namespace": "default", "project": t.shop.pk, "name": "web", "image": swarm.image}, "namespace"),
    ):
        response = t.deploy(t.alice, **body)
        assert response.status_code == 400 and field in response.json(), (body, response.content)
    assert not Namespace.objects.filter(cluster=t.cluster, name__in=["front", "Not A Stack"]).exists()
    assert not Namespace.objects.filter(cluster=t.cluster, project__isnull=False).exists()
    assert engine_service(swarm, "front_web") is None and engine_service(swarm, "web") is None
    response = t.api(t.alice).post(f"/api/v1/clusters/{t.cluster.pk}/stacks/", {"name": "default", "project": t.shop.pk,
                                                                                "compose": "services: {web: {image: x}}"}, format="json")
    assert response.status_code == 400 and "name" in response.json()


async def test_live_events_of_a_deploy_reach_only_its_project(tenants, swarm):
    """The websocket tells a project's member that its service was deployed, scaled and removed,
    and another project's member following the same cluster nothing of it."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    from tests.live_base import listen, read_until, send_sentinel

    t = tenants
    topic = f"cluster-{t.cluster.pk}"
    alice, bob = await listen(t.alice, topic), await listen(t.bob, topic)

    def walk():
        response = t.deploy(t.alice, namespace="front", project=t.shop.pk, name="live", image=swarm.image)
        assert response.status_code == 201, response.content
        ours = response.json()["id"]
        assert t.api(t.alice).post(f"/api/v1/workloads/{ours}/scale/", {"replicas": 2}, format="json").status_code == 200
        assert t.api(t.alice).delete(f"/api/v1/workloads/{ours}/").status_code == 204
        return send_sentinel([t.alice, t.bob], [topic])

    sentinel = await sync_to_async(walk)()
    heard_alice, heard_bob = await read_until(alice, sentinel), await read_until(bob, sentinel)
    await alice.disconnect()
    await bob.disconnect()
    await sync_to_async(connections.close_all)()  # the worker thread's connection: the test database can go
    events = [(m.get("event"), m["data"].get("name")) for m in heard_alice if m.get("type") == "event"]
    assert ("workload.updated", "front_live") in events and ("workload.deleted", "front_live") in events, events
    assert [m for m in heard_bob if "front_live" in str(m)] == [], heard_bob
