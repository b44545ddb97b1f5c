"""Node cordon, uncordon and drain through Corral: against a real sandbox (kube-apiserver,
controller-manager and scheduler with kwok nodes), and refused to whoever may not change the node."""

import json
import time

import pytest

from clusters import sync
from clusters.kube import nodes as kube_nodes
from clusters.models import Cluster, Node
from portal.models import AuditEvent, Operation
from tests.conftest import make_user


def _node(world, cluster=None, name="worker-1"):
    return Node.objects.create(cluster=cluster or world.cluster, uid=f"uid-{name}", name=name, ready=True)


# --- who may ------------------------------------------------------------------------------------

@pytest.mark.parametrize("action", ["cordon", "uncordon", "drain"])
def test_only_who_may_change_the_node_gets_its_actions(world, action):
    node = _node(world)
    url = f"/api/v1/nodes/{node.pk}/{action}/"
    assert world.client(world.viewer).post(url, format="json").status_code == 403  # cluster member: sees it, may not change it
    assert world.client(world.member).post(url, format="json").status_code == 404  # project member: does not see nodes
    assert world.client(world.stranger).post(url, format="json").status_code == 404  # another tenant
    assert world.client(world.nobody).post(url, format="json").status_code == 404
    assert world.client(world.owner, read_only=True).post(url, format="json").status_code == 403
    assert world.client(None).post(url, format="json").status_code in (401, 403)
    assert not Operation.objects.filter(kind="drain").exists()
    assert not AuditEvent.objects.filter(object_type="clusters.node").exists()
    assert Node.objects.get(pk=node.pk).unschedulable is False


def test_drain_options_are_checked_and_a_cluster_that_is_down_is_named(world):
    node = _node(world)
    client = world.client(world.owner)
    bad = client.post(f"/api/v1/nodes/{node.pk}/drain/", {"timeout_seconds": 1, "force": "maybe", "grace": 3}, format="json")
    assert bad.status_code == 400 and {"timeout_seconds", "force"} <= set(bad.json()), bad.json()
    Cluster.objects.filter(pk=world.cluster.pk).update(state="unavailable")
    down = client.post(f"/api/v1/nodes/{node.pk}/cordon/", format="json")
    assert down.status_code == 400 and "unavailable" in str(down.json())
    assert client.post(f"/api/v1/nodes/{node.pk}/drain/", format="json").status_code == 400
    assert not Operation.objects.filter(kind="drain").exists()


def test_the_node_actions_slot_shows_buttons_only_to_who_may(world):
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    node = _node(world)

    def render(user):
        request = RequestFactory().get("/")
        request.user = user
        return render_to_string("clusters/_node_actions.html", {"node": node}, request=request)

    owner = render(world.owner)
    assert f'data-api="/api/v1/nodes/{node.pk}/cordon/"' in owner and f'data-api="/api/v1/nodes/{node.pk}/drain/"' in owner
    assert "data-confirm" in owner
    assert "/drain/" not in render(world.viewer) and "/cordon/" not in render(world.viewer)


def test_a_drain_plan_leaves_daemonset_and_mirror_pods_and_refuses_unmanaged_ones():
    def pod(name, owner=None, phase="Running", annotations=None, volumes=None):
        meta = {"name": name, "namespace": "ns", "annotations": annotations or {}}
        if owner:
            meta["ownerReferences"] = [{"kind": owner, "name": f"{name}-owner", "controller": True}]
        return {"metadata": meta, "spec": {"volumes": volumes or []}, "status": {"phase": phase}}

    pods = [pod("web", "ReplicaSet"), pod("agent", "DaemonSet"), pod("static", "Node", annotations={kube_nodes.MIRROR_ANNOTATION: "x"}),
            pod("bare"), pod("done", phase="Succeeded"), pod("cache", "ReplicaSet", volumes=[{"name": "c", "emptyDir": {}}])]
    leaving = pod("leaving")
    leaving["metadata"]["namespace"] = "old"
    plan = kube_nodes.plan([*pods, leaving], terminating={"old"})
    assert [p["metadata"]["name"] for p in plan.evict] == ["web", "done"]
    assert {k for k, _ in plan.skipped} == {"ns/agent", "ns/static", "old/leaving"}
    assert {k for k, _ in plan.refused} == {"ns/bare", "ns/cache"}
    forced = kube_nodes.plan(pods, force=True, delete_emptydir_data=True)
    assert {p["metadata"]["name"] for p in forced.evict} == {"web", "done", "bare", "cache"}


# --- against a real cluster --------------------------------------------------------------------

@pytest.fixture
def real(world, sandbox, kubectl):
    """The sandbox as a Corral cluster owned by world.owner; every node schedulable again after."""
    cluster = Cluster.objects.create(
        name="nodes", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    from clusters.models import ClusterMembership

    ClusterMembership.objects.create(cluster=cluster, user=world.owner, role="cluster-owner")
    sync.sync(cluster.pk)
    yield cluster
    for name in kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").split():
        kubectl.run("uncordon", name)


def _deploy(kubectl, name, replicas):
    kubectl("create", "deployment", name, "--image=nginx:1.27", f"--replicas={replicas}")
    return _wait_ready(kubectl, name, replicas)


def _pods(kubectl, name):
    out = kubectl("get", "pods", "-l", f"app={name}", "-o", "json")
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def _wait_ready(kubectl, name, replicas, timeout=60, avoid=None):
    deadline = time.monotonic() + timeout
    while True:
        pods = _pods(kubectl, name)
        running = [p for p in pods if p["status"].get("phase") == "Running" and p["spec"].get("nodeName") and p["spec"]["nodeName"] != avoid]
        if len(running) == replicas == len(pods):
            return pods
        assert time.monotonic() < deadline, f"{name}: never saw {replicas} running pods: {[(p['metadata']['name'], p['status'].get('phase'), p['spec'].get('nodeName')) for p in pods]}"
        time.sleep(0.5)


def _busiest_node(cluster, pods):
    names = [p["spec"]["nodeName"] for p in pods]
    busiest = max(set(names), key=names.count)
    return Node.objects.get(cluster=cluster, name=busiest)


def test_cordon_and_uncordon_set_spec_unschedulable(world, real, kubectl):
    node = Node.objects.filter(cluster=real).order_by("name").first()
    client = world.client(world.owner)
    response = client.post(f"/api/v1/nodes/{node.pk}/cordon/", format="json")
    assert response.status_code == 200, response.content
    assert response.json()["unschedulable"] is True
    assert kubectl("get", "node", node.name, "-o", "jsonpath={.spec.unschedulable}") == "true"
    assert Node.objects.get(pk=node.pk).unschedulable is True  # the inventory knows at once

    response = client.post(f"/api/v1/nodes/{node.pk}/uncordon/", format="json")
    assert response.status_code == 200 and response.json()["unschedulable"] is False
    assert kubectl("get", "node", node.name, "-o", "jsonpath={.spec.unschedulable}") == ""
    assert Node.objects.get(pk=node.pk).unschedulable is False
    messages = list(AuditEvent.objects.filter(object_type="clusters.node", object_id=str(node.pk), username="owner").values_list("message", flat=True))
    assert messages == ["cordoned", "uncordoned"] or sorted(messages) == ["cordoned", "uncordoned"]


def test_drain_evicts_the_pods_and_their_replicaset_starts_them_elsewhere(world, real, kubectl, django_capture_on_commit_callbacks):
    pods = _deploy(kubectl, "web", 4)
    kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}},
                 "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}}}))
    node = _busiest_node(real, pods)
    _wait_ready(kubectl, "agent", Node.objects.filter(cluster=real).count())
    on_node = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == node.name}

    with django_capture_on_commit_callbacks(execute=True):
        response = world.client(world.owner).post(f"/api/v1/nodes/{node.pk}/drain/", {"timeout_seconds": 60}, format="json")
    assert response.status_code == 202, response.content
    op = Operation.objects.get(pk=response.json()["id"])
    assert op.kind == "drain" and op.status == "succeeded", (op.status, op.error, op.log)
    log = " | ".join(line["message"] for line in op.log)
    assert f"cordoned {node.name}" in log and "DaemonSet pod" in log
    for name in on_node:
        assert f"evicted {kubectl.namespace}/{name}" in log

    assert kubectl("get", "node", node.name, "-o", "jsonpath={.spec.unschedulable}") == "true"
    after = _wait_ready(kubectl, "web", 4, avoid=node.name)
    assert not on_node & {p["metadata"]["name"] for p in after}
    assert all(p["spec"]["nodeName"] != node.name for p in after)  # started elsewhere
    agents = [p["spec"]["nodeName"] for p in _pods(kubectl, "agent")]
    assert node.name in agents  # the DaemonSet's pod stays
    events = AuditEvent.objects.filter(object_type="clusters.node", object_id=str(node.pk), username="owner")
    assert events.filter(message__startswith="drain started").exists()
    assert events.filter(message=f"drained: {len(on_node)} pod(s) evicted").exists()
    assert Node.objects.get(pk=node.pk).unschedulable is True


@pytest.fixture
def quiet_eager():
    """As on a worker: a task's failure is its operation's, not raised into the request."""
    from portal.celery import app

    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = True


def test_a_pod_disruption_budget_that_blocks_is_named_in_the_failure(world, real, kubectl, django_capture_on_commit_callbacks, quiet_eager):
    pods = _deploy(kubectl, "db", 3)
    kubectl("create", "poddisruptionbudget", "db", "--selector=app=db", "--min-available=3")
    node = _busiest_node(real, pods)
    blocked = sorted(p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == node.name)

    with django_capture_on_commit_callbacks(execute=True):
        response = world.client(world.owner).post(f"/api/v1/nodes/{node.pk}/drain/", {"timeout_seconds": 10}, format="json")
    assert response.status_code == 202, response.content
    op = Operation.objects.get(pk=response.json()["id"])
    assert op.status == "failed"
    assert "timed out after 10s" in op.error and "disruption budget" in op.error, op.error
    for name in blocked:
        assert f"{kubectl.namespace}/{name}" in op.error
    assert sorted(p["metadata"]["name"] for p in _pods(kubectl, "db")) == sorted(p["metadata"]["name"] for p in pods)  # nothing evicted
    assert AuditEvent.objects.filter(object_type="clusters.node", object_id=str(node.pk), message__startswith="drain failed").exists()


def test_a_second_drain_of_the_same_node_is_refused_while_one_runs(world, real):
    node = Node.objects.filter(cluster=real).first()
    client = world.client(world.owner)
    first = client.post(f"/api/v1/nodes/{node.pk}/drain/", format="json")  # queued (its task runs at commit)
    assert first.status_code == 202
    again = client.post(f"/api/v1/nodes/{node.pk}/drain/", format="json")
    assert again.status_code == 400 and "already being drained" in again.json()["detail"]
    assert Operation.objects.filter(kind="drain").count() == 1


def test_the_node_actions_are_refused_to_a_project_member_of_the_real_cluster(world, real, kubectl):
    from projects.models import Project, ProjectMembership

    dev = make_user("dev")
    ProjectMembership.objects.create(project=Project.objects.create(cluster=real, name="apps"), user=dev, role="project-owner")
    node = Node.objects.filter(cluster=real).first()
    assert world.client(dev).post(f"/api/v1/nodes/{node.pk}/cordon/", format="json").status_code == 404
    assert world.client(world.stranger).post(f"/api/v1/nodes/{node.pk}/drain/", format="json").status_code == 404
    assert kubectl("get", "node", node.name, "-o", "jsonpath={.spec.unschedulable}") == ""
