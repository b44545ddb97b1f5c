"""Expose names what it made and links to it; a Service's endpoints are read from its
EndpointSlices in a real sandbox (the endpointslice controller of its kube-controller-manager),
only for whoever may see the Service."""

import time

import pytest
from django.template.loader import render_to_string
from django.test import RequestFactory

from clusters import sync
from clusters.models import Cluster, Namespace, Service
from projects.models import Project, ProjectMembership
from tests.conftest import make_user

pytestmark = pytest.mark.kube


@pytest.fixture
def setup(world, sandbox, kubectl):
    cluster = Cluster.objects.create(
        name="svc", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    sync.sync(cluster.pk)
    project = Project.objects.create(cluster=cluster, name="web")
    Namespace.objects.filter(cluster=cluster, name=kubectl.namespace).update(project=project)
    dev, reader = make_user("dev"), make_user("reader")
    ProjectMembership.objects.create(project=project, user=dev, role="project-member")
    ProjectMembership.objects.create(project=project, user=reader, role="read-only")
    return cluster, dev, reader


def _deploy(world, cluster, dev, ns, replicas=3):
    client = world.client(dev)
    response = client.post("/api/v1/workloads/", {"cluster": cluster.pk, "namespace": ns, "name": "nginx", "image": "nginx:1.27",
                                                  "replicas": replicas, "ports": [80]}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _render(user, service):
    request = RequestFactory().get("/")
    request.user = user
    return render_to_string("clusters/_service_endpoints.html", {"service": service}, request=request)


def test_expose_names_the_service_and_its_page_and_the_endpoints_follow(world, setup, kubectl):
    cluster, dev, reader = setup
    ns = kubectl.namespace
    workload_id = _deploy(world, cluster, dev, ns)
    client = world.client(dev)

    response = client.post(f"/api/v1/workloads/{workload_id}/expose/", {"port": 80}, format="json")
    assert response.status_code == 201, response.content
    made = response.json()
    cluster_ip = kubectl("get", "service", "nginx", "-o", "jsonpath={.spec.clusterIP}")
    assert made["name"] == "nginx" and made["type"] == "ClusterIP" and made["cluster_ip"] == cluster_ip and cluster_ip
    assert made["ports"] == [{"port": 80, "targetPort": 80, "protocol": "TCP"}]
    service = Service.objects.get(pk=made["id"])  # stored at once, before any watch event
    assert (service.name, service.namespace.name) == ("nginx", ns)
    assert made["page"] == f"/services/{service.pk}/"
    assert made["summary"] == f"Service nginx (ClusterIP {cluster_ip}:80)"

    deadline = time.monotonic() + 60
    while True:
        answer = client.get(f"/api/v1/services/{service.pk}/endpoints/")
        assert answer.status_code == 200, answer.content
        endpoints = answer.json()
        if len(endpoints) == 3 and all(e["ready"] for e in endpoints):
            break
        assert time.monotonic() < deadline, f"never saw 3 ready endpoints: {endpoints}"
        time.sleep(0.5)
    pods = {p["metadata"]["name"]: p for p in __import__("json").loads(kubectl("get", "pods", "-l", "app=nginx", "-o", "json"))["items"]}
    assert {e["pod"] for e in endpoints} == set(pods)
    for e in endpoints:
        pod = pods[e["pod"]]
        assert e["address"] == pod["status"]["podIP"] and e["node"] == pod["spec"]["nodeName"]
        assert e["ports"] == [{"name": "", "port": 80, "protocol": "TCP"}]
    sync.sync(cluster.pk)
    by_pod = {e["pod"]: e for e in client.get(f"/api/v1/services/{service.pk}/endpoints/").json()}
    assert all(e["pod_id"] for e in by_pod.values())  # linked to the pods Corral knows
    assert all(e["node_id"] is None for e in by_pod.values())  # a project member does not see nodes

    page = _render(dev, service)
    assert "3 of 3 ready" in page
    for e in endpoints:
        assert e["address"] in page and e["pod"] in page and e["node"] in page
    assert world.client(reader).get(f"/api/v1/services/{service.pk}/endpoints/").status_code == 200
    # Another tenant, and someone with no role: nothing, not even that the Service exists.
    assert world.client(world.stranger).get(f"/api/v1/services/{service.pk}/endpoints/").status_code == 404
    assert world.client(world.nobody).get(f"/api/v1/services/{service.pk}/endpoints/").status_code == 404
    assert _render(world.stranger, service).strip() == "" and _render(world.nobody, service).strip() == ""


def test_bad_ports_names_and_duplicates_are_refused_and_nothing_changes(world, setup, kubectl):
    cluster, dev, reader = setup
    workload_id = _deploy(world, cluster, dev, kubectl.namespace, replicas=1)
    client = world.client(dev)
    url = f"/api/v1/workloads/{workload_id}/expose/"
    for body, field in (({"port": 0}, "port"), ({"port": 70000}, "port"), ({"port": "http"}, "port"), ({}, "port"),
                        ({"port": 80, "target_port": -1}, "target_port"), ({"port": 80, "type": "Ingress"}, "type"),
                        ({"port": 80, "name": "Web_1"}, "name"), ({"port": 80, "name": "1web"}, "name")):
        answer = client.post(url, body, format="json")
        assert answer.status_code == 400 and field in answer.json(), (body, answer.content)
    assert kubectl("get", "services", "-o", "name").strip() == ""
    assert client.post(url, {"port": 80}, format="json").status_code == 201
    again = client.post(url, {"port": 8080}, format="json")
    assert again.status_code == 400 and "already exists" in again.json()["name"][0]
    assert kubectl("get", "service", "nginx", "-o", "jsonpath={.spec.ports[0].port}") == "80"  # untouched
    other = client.post(url, {"port": 8080, "name": "nginx-alt", "type": "NodePort"}, format="json")
    assert other.status_code == 201 and other.json()["name"] == "nginx-alt" and other.json()["ports"][0]["nodePort"] > 0
    assert world.client(reader).post(url, {"port": 81, "name": "x"}, format="json").status_code == 403
    assert world.client(world.stranger).post(url, {"port": 81, "name": "y"}, format="json").status_code == 404
    assert sorted(kubectl("get", "services", "-o", "jsonpath={.items[*].metadata.name}").split()) == ["nginx", "nginx-alt"]


def test_endpoints_of_a_cluster_that_cannot_be_read_say_so(world, setup, kubectl):
    cluster, dev, reader = setup
    workload_id = _deploy(world, cluster, dev, kubectl.namespace, replicas=1)
    service_id = world.client(dev).post(f"/api/v1/workloads/{workload_id}/expose/", {"port": 80}, format="json").json()["id"]
    service = Service.objects.select_related("cluster", "namespace").get(pk=service_id)

    Cluster.objects.filter(pk=cluster.pk).update(state="unavailable")
    service.cluster.refresh_from_db()
    answer = world.client(dev).get(f"/api/v1/services/{service_id}/endpoints/")
    assert answer.status_code == 400 and answer.json() == {"cluster": [f"cluster {cluster.name} is unavailable"]}
    assert f"cluster {cluster.name} is unavailable" in _render(dev, service)

    credentials = dict(cluster.credentials, server="https://127.0.0.1:9")  # nothing listens there
    Cluster.objects.filter(pk=cluster.pk).update(state="active")
    cluster.refresh_from_db()
    cluster.credentials = credentials
    cluster.save()
    service.cluster.refresh_from_db()
    page = _render(dev, service)
    assert "the endpoints cannot be read now" in page and "cannot connect" in page, page
    answer = world.client(dev).get(f"/api/v1/services/{service_id}/endpoints/")
    assert answer.status_code == 503 and "cannot connect" in answer.json()["detail"]
