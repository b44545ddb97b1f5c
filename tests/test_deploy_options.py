"""The deploy form and API: ports, environment, CPU/memory with the namespace's project
container defaults filled in (and shown as the form's placeholders); every bad field named,
nothing deployed.  Against a real sandbox for what reaches the cluster."""

import json
import time

import pytest
from django.test import Client

from clusters import sync
from clusters.models import Cluster, Namespace
from projects.models import Project, ProjectMembership
from tests.conftest import make_user

DEFAULTS = {"limits.cpu": "500m", "limits.memory": "128Mi", "requests.memory": "64Mi"}


def test_the_deploy_form_offers_ports_env_resources_and_shows_the_project_defaults(world):
    world.project.container_default_limits = DEFAULTS
    world.project.save()
    Namespace.objects.create(cluster=world.cluster, uid="ns-free", name="free")  # no project: examples only
    web = Client()
    web.force_login(world.member)
    page = web.get(f"/clusters/{world.cluster.pk}/").content.decode()
    form = page[page.index('id="deploy"'):page.index("</form>", page.index('id="deploy"'))]
    for name in ("ports", "env", "resources.requests.cpu", "resources.limits.cpu", "resources.requests.memory", "resources.limits.memory"):
        assert f'name="{name}"' in form
    assert 'data-type="ints"' in form and 'data-type="env"' in form
    assert "500m (project web default)" in form and "64Mi (project web default)" in form
    assert "free" not in form  # the member may deploy only into the project's namespace
    owner = Client()
    owner.force_login(world.owner)
    form = owner.get(f"/clusters/{world.cluster.pk}/").content.decode()
    assert "free" in form and "e.g. 100m" in form


@pytest.mark.parametrize("extra, field, words", [
    ({"ports": [80, 80]}, "ports", "given twice"),
    ({"ports": [0]}, "ports", ""),
    ({"ports": "80"}, "ports", ""),
    ({"port": 80, "ports": [81]}, "port", "not both"),
    ({"env": [{"name": "BAD NAME", "value": "x"}]}, "env", "not a valid name"),
    ({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "env", "given twice"),
    ({"env": "A=1"}, "env", "must be a list"),
    ({"env": [{"name": "A", "value": {"x": 1}}]}, "env", "must be text"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "resources", "requests.cpu"),
    ({"resources": {"limits": {"gpu": "1"}}}, "resources", "limits.gpu"),
    ({"resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "500m"}}}, "resources", "requests.cpu: 1 is more than the limit 500m"),
    ({"resources": {"maximum": {}}}, "resources", "maximum"),
])
def test_bad_deploy_fields_are_named_and_nothing_is_deployed(world, extra, field, words):
    body = {"cluster": world.cluster.pk, "namespace": world.namespace.name, "name": "web", "image": "nginx", **extra}
    answer = world.client(world.member).post("/api/v1/workloads/", body, format="json")
    assert answer.status_code == 400 and field in answer.json(), answer.content
    assert words in " ".join(answer.json()[field])


def test_a_request_over_the_project_default_limit_is_refused_before_the_cluster_is_asked(world):
    world.project.container_default_limits = DEFAULTS
    world.project.save()
    body = {"cluster": world.cluster.pk, "namespace": world.namespace.name, "name": "web", "image": "nginx",
            "resources": {"requests": {"cpu": "2"}}}
    answer = world.client(world.member).post("/api/v1/workloads/", body, format="json")
    assert answer.status_code == 400
    assert answer.json()["resources"] == ["requests.cpu: 2 is more than the limit 500m (the default of project web; give a higher limit)"]


@pytest.mark.kube
def test_ports_env_and_resources_reach_the_cluster_with_the_project_defaults(world, sandbox, kubectl):
    cluster = Cluster.objects.create(
        name="deploy", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    sync.sync(cluster.pk)
    project = Project.objects.create(cluster=cluster, name="apps", container_default_limits=DEFAULTS)
    Namespace.objects.filter(cluster=cluster, name=kubectl.namespace).update(project=project)
    dev = make_user("dev")
    ProjectMembership.objects.create(project=project, user=dev, role="project-member")

    body = {"cluster": cluster.pk, "namespace": kubectl.namespace, "name": "api", "image": "api:2", "ports": [8080, 9090],
            "env": [{"name": "MODE", "value": "prod"}, {"name": "GREETING", "value": "a=b c"}],
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}}
    answer = world.client(dev).post("/api/v1/workloads/", body, format="json")
    assert answer.status_code == 201, answer.content
    applied = {"requests": {"cpu": "100m"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
    assert answer.json()["container"]["resources"] == applied

    container = json.loads(kubectl("get", "deployment", "api", "-o", "json"))["spec"]["template"]["spec"]["containers"][0]
    assert [p["containerPort"] for p in container["ports"]] == [8080, 9090]
    assert container["env"] == [{"name": "MODE", "value": "prod"}, {"name": "GREETING", "value": "a=b c"}]
    assert container["resources"] == applied
    # The memory request was left out where a limit was given: Kubernetes makes it the limit.
    deadline = time.monotonic() + 30
    while not (pods := json.loads(kubectl("get", "pods", "-l", "app=api", "-o", "json"))["items"]):
        assert time.monotonic() < deadline, "the ReplicaSet made no pod"
        time.sleep(0.5)
    assert pods[0]["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}

    bare = world.client(dev).post("/api/v1/workloads/", {"cluster": cluster.pk, "namespace": kubectl.namespace, "name": "bare", "image": "x:1"}, format="json")
    assert bare.status_code == 201, bare.content
    container = json.loads(kubectl("get", "deployment", "bare", "-o", "json"))["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}
