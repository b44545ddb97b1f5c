"""Move to Kubernetes through the API: a stack deployed on a real swarm (tests/swarm_fixtures.py) is
previewed and applied into a namespace of a real sandbox Kubernetes cluster, whose Deployments and
DaemonSets become ready there (kwok runs the pods); what could not be translated is named; another
tenant can neither preview nor apply, nor apply where it may not deploy.  The translation's details
are unit-tested in tests/test_swarm_migrate_translate.py."""

import json

import pytest
from django.test import Client

from clusters import sync
from clusters.models import Cluster, Namespace, Workload
from projects.models import Project, ProjectMembership
from tests.conftest import make_user
from tests.kube_fixtures import imported_cluster
from tests.waiting import wait_for

STACK = """
version: "3.8"
services:
  web:
    image: {image}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    environment: {{MODE: production}}
    ports: ["8081:8080"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 10s
      retries: 2
    deploy:
      replicas: 2
      resources:
        limits: {{cpus: "0.5", memory: 64M}}
        reservations: {{cpus: "0.1", memory: 32M}}
      placement:
        constraints: ["node.platform.os==linux", "node.hostname!=nowhere", "engine.labels.disk==ssd"]
      update_config: {{parallelism: 1, order: start-first}}
    secrets: [token]
    configs:
      - source: site
        target: /www/site.txt
  agent:
    image: {image}
    command: ["sleep", "100000"]
    deploy:
      mode: global
secrets:
  token: {{file: ./token.txt}}
configs:
  site: {{file: ./site.txt}}
"""


def _swarm_cluster(project_name="swarm-apps", credentials=None):
    cluster = Cluster.objects.create(name=f"swarm-{project_name}", kind="swarm", driver="imported", state="active",
                                     api_endpoint=(credentials or {}).get("endpoint", "unix:///nonexistent/docker.sock"),
                                     credentials=credentials or {"endpoint": "unix:///nonexistent/docker.sock"})
    project = Project.objects.create(cluster=cluster, name=project_name)
    return cluster, project


@pytest.mark.kube
def test_a_swarm_stack_moves_into_a_project_namespace_and_becomes_ready(world, swarm, sandbox, kubectl, tmp_path):
    (tmp_path / "token.txt").write_text("s3cret\n")
    (tmp_path / "site.txt").write_text("hello\n")
    (tmp_path / "stack.yml").write_text(STACK.format(image=swarm.image))
    swarm.docker("stack", "deploy", "-c", tmp_path / "stack.yml", "shop")
    try:
        swarm_cluster, swarm_project = _swarm_cluster(credentials=swarm.credentials)
        sync.sync(swarm_cluster.pk)  # Corral's Swarm inventory: the stack a Namespace, its services Workloads of kind "service"
        stack = Namespace.objects.get(cluster=swarm_cluster, name="shop")
        Namespace.objects.filter(pk=stack.pk).update(project=swarm_project)
        web = Workload.objects.get(cluster=swarm_cluster, name="shop_web", kind="service")

        kube = imported_cluster(sandbox, "k8s-target")
        sync.sync(kube.pk)
        kube_project = Project.objects.create(cluster=kube, name="apps")
        Namespace.objects.filter(cluster=kube, name=kubectl.namespace).update(project=kube_project)
        dev = make_user("dev")
        for project in (swarm_project, kube_project):
            ProjectMembership.objects.create(project=project, user=dev, role="project-member")
        api = world.client(dev)

        # One service, no target: the YAML and what was left out.
        preview = api.get(f"/api/v1/workloads/{web.pk}/migration/")
        assert preview.status_code == 200, preview.content
        assert [(o["kind"], o["metadata"]["name"]) for o in preview.json()["objects"]] == [("Deployment", "web"), ("Service", "web")]
        assert "kind: Deployment" in preview.json()["yaml"] and preview.json()["target"] is None

        # The stack into the project's namespace.
        target = {"cluster": kube.pk, "namespace": kubectl.namespace}
        preview = api.get(f"/api/v1/namespaces/{stack.pk}/migration/", target)
        assert preview.status_code == 200, preview.content
        body = preview.json()
        assert body["target"] == {"cluster": kube.pk, "namespace": kubectl.namespace, "may_apply": True}
        assert {(o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) for o in body["objects"]} == {
            ("DaemonSet", "agent", kubectl.namespace), ("Service", "agent", kubectl.namespace),
            ("Deployment", "web", kubectl.namespace), ("Service", "web", kubectl.namespace)}
        left = {(u["service"], u["setting"], json.dumps(u["value"])) for u in body["untranslated"]}
        assert ("shop_web", "TaskTemplate.Placement.Constraints", '"engine.labels.disk==ssd"') in left
        assert ("shop_web", "EndpointSpec.Ports.PublishedPort", '["8081/tcp"]') in left
        assert ("shop_web", "TaskTemplate.Networks", '"shop_default"') in left  # the network by name
        needs = {(n["kind"], n["name"]): n for n in body["needs"]}
        assert set(needs) == {("Secret", "token"), ("ConfigMap", "site")}
        assert not needs["Secret", "token"]["exists"] and not needs["ConfigMap", "site"]["exists"]

        # The same on the page, with the Apply button for a namespace the user may deploy to.
        browser = Client()
        browser.force_login(dev)
        page = browser.get(f"/namespaces/{stack.pk}/migrate/", {"target": f"{kube.pk}/{kubectl.namespace}"})
        assert page.status_code == 200
        html = page.content.decode()
        assert 'id="migration-yaml"' in html and "kind: DaemonSet" in html and "engine.labels.disk==ssd" in html
        assert 'id="migration-apply"' in html and "Secret <code>token</code>" in html

        # A name already taken in the namespace: the dry run refuses it and nothing is applied.
        kubectl("create", "service", "clusterip", "web", "--tcp=1:1")
        refused = api.post(f"/api/v1/namespaces/{stack.pk}/migration/", target, format="json")
        assert refused.status_code == 400, refused.content
        assert "Service web" in refused.json()["detail"] and "nothing was applied" in refused.json()["detail"]
        assert json.loads(kubectl("get", "deployments,daemonsets", "-o", "json"))["items"] == []
        kubectl("delete", "service", "web")

        # A refusal the dry run cannot foresee (a quota of one Service: each passes alone): what was
        # created before it is deleted again.
        kubectl("create", "quota", "one-service", "--hard=services=1")
        wait_for(lambda: json.loads(kubectl("get", "quota", "one-service", "-o", "json")).get("status", {}).get("used"),
                 30, "the quota controller to count the namespace")
        refused = api.post(f"/api/v1/namespaces/{stack.pk}/migration/", target, format="json")
        assert refused.status_code == 400, refused.content
        assert "Service web" in refused.json()["detail"] and "exceeded quota" in refused.json()["detail"]
        assert "created before it were deleted again" in refused.json()["detail"]
        wait_for(lambda: json.loads(kubectl("get", "deployments,daemonsets,services", "-o", "json"))["items"] == [],
                 30, "nothing left of the refused apply", lambda: kubectl("get", "all"))
        kubectl("delete", "quota", "one-service")

        # The user makes the Secret and ConfigMap the preview named (Corral never reads them), then applies.
        kubectl("create", "secret", "generic", "token", f"--from-literal={needs['Secret', 'token']['keys'][0]}=s3cret")
        kubectl("create", "configmap", "site", f"--from-literal={needs['ConfigMap', 'site']['keys'][0]}=hello")
        applied = api.post(f"/api/v1/namespaces/{stack.pk}/migration/", target, format="json")
        assert applied.status_code == 201, applied.content
        created = {(c["kind"], c["name"]): c["id"] for c in applied.json()["created"]}
        assert set(created) == {("DaemonSet", "agent"), ("Service", "agent"), ("Deployment", "web"), ("Service", "web")}
        assert all(n["exists"] for n in applied.json()["needs"])
        assert Workload.objects.get(pk=created["Deployment", "web"]).namespace.project == kube_project

        deployment = json.loads(kubectl("get", "deployment", "web", "-o", "json"))
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert deployment["spec"]["replicas"] == 2
        assert container["resources"] == {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}}
        assert container["env"] == [{"name": "MODE", "value": "production"}]
        assert container["readinessProbe"]["exec"]["command"] == ["wget", "-q", "-O-", "http://127.0.0.1:8080/"]
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        wait_for(lambda: json.loads(kubectl("get", "deployment", "web", "-o", "json"))["status"].get("readyReplicas") == 2,
                 60, "the migrated Deployment to be ready", lambda: kubectl("get", "pods", "-o", "wide"))
        nodes = len(json.loads(kubectl("get", "nodes", "-o", "json"))["items"])

        def daemonset_ready():
            status = json.loads(kubectl("get", "daemonset", "agent", "-o", "json"))["status"]
            return status.get("desiredNumberScheduled") == nodes and status.get("numberReady") == nodes

        wait_for(daemonset_ready, 60, "the migrated DaemonSet to be ready on every node", lambda: kubectl("get", "pods", "-o", "wide"))
        assert json.loads(kubectl("get", "service", "web", "-o", "json"))["spec"]["ports"][0]["port"] == 8081

        again = api.post(f"/api/v1/namespaces/{stack.pk}/migration/", target, format="json")
        assert again.status_code == 400 and "already exists" in again.json()["detail"]
    finally:
        swarm.docker("stack", "rm", "shop", check=False)


def test_another_tenant_can_neither_preview_nor_apply_nor_apply_where_it_may_not_deploy(world):
    swarm_cluster, swarm_project = _swarm_cluster()
    stack = Namespace.objects.create(cluster=swarm_cluster, uid="stack-shop", name="shop", project=swarm_project)
    service = Workload.objects.create(cluster=swarm_cluster, namespace=stack, uid="abcdefghijklmnopqrstuvwxy", name="shop_web", kind="service")
    ProjectMembership.objects.create(project=swarm_project, user=world.member, role="project-member")
    ProjectMembership.objects.create(project=swarm_project, user=world.viewer, role="read-only")
    target = {"cluster": world.cluster.pk, "namespace": world.namespace.name}

    for user in (world.stranger, world.nobody):  # may not see the Swarm side at all
        api = world.client(user)
        for path in (f"/api/v1/workloads/{service.pk}/migration/", f"/api/v1/namespaces/{stack.pk}/migration/"):
            assert api.get(path).status_code == 404
            assert api.get(path, target).status_code == 404
            assert api.post(path, target, format="json").status_code == 404

    page = Client()
    page.force_login(world.stranger)
    assert page.get(f"/workloads/{service.pk}/migrate/").status_code == 404
    assert page.post(f"/namespaces/{stack.pk}/migrate/", {"target": f"{world.cluster.pk}/{world.namespace.name}"}).status_code == 404

    # May see the service, but not the target namespace: named, as the deploy does.
    unseen = world.client(world.member).post(f"/api/v1/workloads/{service.pk}/migration/",
                                             {"cluster": world.other_cluster.pk, "namespace": world.other_namespace.name}, format="json")
    assert unseen.status_code == 400 and "batch-prod" in unseen.json()["namespace"][0]
    # Sees the target namespace but may not deploy into it (read-only in project web).
    read_only = world.client(world.viewer)
    assert read_only.post(f"/api/v1/workloads/{service.pk}/migration/", target, format="json").status_code == 403
    assert read_only.post(f"/api/v1/namespaces/{stack.pk}/migration/", target, format="json").status_code == 403
    # A read-only token of a member who could deploy.
    assert world.client(world.member, read_only=True).post(f"/api/v1/workloads/{service.pk}/migration/", target,
                                                           format="json").status_code == 403
    # A Kubernetes workload is not a Swarm service; a bad target is named.
    kube_workload = Workload.objects.create(cluster=world.cluster, namespace=world.namespace, uid="u-1", name="api", kind="deployment")
    member = world.client(world.member)
    assert member.get(f"/api/v1/workloads/{kube_workload.pk}/migration/").status_code == 400
    assert member.post(f"/api/v1/workloads/{service.pk}/migration/", {"cluster": "x"}, format="json").status_code == 400
