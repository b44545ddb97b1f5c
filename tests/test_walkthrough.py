"""The seed's hands-on walk-through, done through Corral's API against a real sandbox: deploy
nginx, scale it to 3, delete a pod and watch the ReplicaSet bring a new one, expose port 80.
Corral checks permissions itself; the inventory follows the cluster."""

import time

import pytest

from clusters import sync
from clusters.models import Cluster, Namespace, Pod, Service, Workload
from portal.models import AuditEvent
from projects.models import Project, ProjectMembership
from tests.conftest import make_user

pytestmark = pytest.mark.kube


@pytest.fixture
def setup(world, sandbox, kubectl):
    cluster = Cluster.objects.create(
        name="walk", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    sync.sync(cluster.pk)
    project = Project.objects.create(cluster=cluster, name="web")
    Namespace.objects.filter(cluster=cluster, name=kubectl.namespace).update(project=project)
    dev, reader = make_user("dev"), make_user("reader")
    ProjectMembership.objects.create(project=project, user=dev, role="project-member")
    ProjectMembership.objects.create(project=project, user=reader, role="read-only")
    return cluster, dev, reader


def running(cluster, namespace, count, timeout=60):
    """Resync until the cluster shows ``count`` Running nginx pods; returns them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sync.sync(cluster.pk)
        pods = list(Pod.objects.filter(cluster=cluster, namespace__name=namespace, workload__name="nginx"))
        if len(pods) == count and all(p.phase == "Running" for p in pods):
            return pods
        time.sleep(0.5)
    raise AssertionError(f"never saw {count} Running pods")


def reader_cannot_change_image(world, reader, workload_id):
    return world.client(reader).post(f"/api/v1/workloads/{workload_id}/image/", {"image": "nginx:evil"}, format="json").status_code == 403


def test_deploy_scale_delete_a_pod_and_expose_through_corral(world, setup, kubectl):
    cluster, dev, reader = setup
    ns = kubectl.namespace
    client = world.client(dev)

    response = client.post("/api/v1/workloads/", {"cluster": cluster.pk, "namespace": ns, "name": "nginx", "image": "nginx:1.27"}, format="json")
    assert response.status_code == 201, response.content
    workload_id = response.json()["id"]
    assert kubectl("get", "deployment", "nginx", "-o", "jsonpath={.spec.template.spec.containers[0].image}") == "nginx:1.27"
    [pod] = running(cluster, ns, 1)
    assert pod.node_name.startswith("kwok-node") or pod.node_id is not None

    response = client.post(f"/api/v1/workloads/{workload_id}/scale/", {"replicas": 3}, format="json")
    assert response.status_code == 200 and response.json()["desired_replicas"] == 3
    pods = running(cluster, ns, 3)

    doomed = pods[0]
    assert client.delete(f"/api/v1/pods/{doomed.pk}/").status_code == 204
    deadline = time.monotonic() + 60
    while True:
        after = running(cluster, ns, 3)
        if doomed.uid not in {p.uid for p in after}:
            break
        assert time.monotonic() < deadline, "the deleted pod never went away"
    assert len({p.uid for p in after} - {p.uid for p in pods}) == 1  # the ReplicaSet made one new pod

    response = client.post(f"/api/v1/workloads/{workload_id}/expose/", {"port": 80}, format="json")
    assert response.status_code == 201, response.content
    assert Service.objects.filter(cluster=cluster, namespace__name=ns, name="nginx").exists()
    endpoints = kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=nginx", "-o", "jsonpath={.items[*].endpoints[*].targetRef.name}").split()
    assert sorted(endpoints) == sorted(p.name for p in after)

    # A new image, rolled out by the Deployment (the same endpoint moves a Swarm service).
    response = client.post(f"/api/v1/workloads/{workload_id}/image/", {"image": "nginx:1.28"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["images"] == ["nginx:1.28"]
    assert kubectl("get", "deployment", "nginx", "-o", "jsonpath={.spec.template.spec.containers[0].image}") == "nginx:1.28"
    assert reader_cannot_change_image(world, reader, workload_id)

    actions = set(AuditEvent.objects.filter(username="dev").values_list("object_type", "action"))
    assert {("clusters.workload", "create"), ("clusters.workload", "action"), ("clusters.pod", "delete"), ("clusters.service", "create")} <= actions


def test_read_only_and_strangers_cannot_change_workloads(world, setup, kubectl):
    cluster, dev, reader = setup
    ns = kubectl.namespace
    body = {"cluster": cluster.pk, "namespace": ns, "name": "nginx", "image": "nginx"}
    assert world.client(reader).post("/api/v1/workloads/", body, format="json").status_code == 403
    assert world.client(world.stranger).post("/api/v1/workloads/", body, format="json").status_code == 400  # namespace not visible
    workload_id = world.client(dev).post("/api/v1/workloads/", body, format="json").json()["id"]
    assert world.client(reader).post(f"/api/v1/workloads/{workload_id}/scale/", {"replicas": 2}, format="json").status_code == 403
    assert world.client(world.stranger).post(f"/api/v1/workloads/{workload_id}/scale/", {"replicas": 2}, format="json").status_code == 404
    assert world.client(reader).delete(f"/api/v1/workloads/{workload_id}/").status_code == 403
    assert kubectl("get", "deployment", "nginx", "-o", "jsonpath={.spec.replicas}") == "1"
    assert world.client(dev).delete(f"/api/v1/workloads/{workload_id}/").status_code == 204
    assert not Workload.objects.filter(pk=workload_id).exists()


def test_bad_input_and_cluster_refusals_are_clear(world, setup, kubectl):
    cluster, dev, reader = setup
    ns = kubectl.namespace
    client = world.client(dev)
    bad = client.post("/api/v1/workloads/", {"cluster": cluster.pk, "namespace": ns, "name": "Not_A_Name", "image": "has space", "replicas": -1}, format="json")
    assert bad.status_code == 400 and {"name", "image", "replicas"} <= set(bad.json())
    body = {"cluster": cluster.pk, "namespace": ns, "name": "nginx", "image": "nginx"}
    workload_id = client.post("/api/v1/workloads/", body, format="json").json()["id"]
    again = client.post("/api/v1/workloads/", body, format="json")
    assert again.status_code == 400 and "already exists" in again.json()["detail"]
    assert client.post(f"/api/v1/workloads/{workload_id}/scale/", {"replicas": 5000}, format="json").status_code == 400
    client.post(f"/api/v1/workloads/{workload_id}/expose/", {"port": 80}, format="json")
    twice = client.post(f"/api/v1/workloads/{workload_id}/expose/", {"port": 80}, format="json")
    assert twice.status_code == 400 and "already exists" in twice.json()["name"][0]
    Cluster.objects.filter(pk=cluster.pk).update(state="unavailable")
    down = client.post(f"/api/v1/workloads/{workload_id}/scale/", {"replicas": 2}, format="json")
    assert down.status_code == 400 and "unavailable" in str(down.json())
