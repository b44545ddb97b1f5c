"""Importing a Docker Swarm, against a real dockerd (tests/swarm_fixtures.py): by its unix socket and
by tcp with TLS client certificates, and every failure a 400 naming the cause with nothing stored
(ssh:// endpoints: tests/test_swarm_ssh.py)."""

import socket

import pytest

from clusters.models import Cluster, ClusterMembership, Namespace
from portal.models import GlobalRoleBinding
from tests.swarm_fixtures import _pem, issue, make_ca
from tools import docker as docker_tool

URL = "/api/v1/clusters/import/"


@pytest.fixture
def importer(world):
    return world.client(world.owner)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(response, field, *words):
    assert response.status_code == 400, response.content
    message = " ".join(response.json()[field])
    assert all(w in message for w in words), message
    assert not Cluster.objects.filter(kind="swarm").exists()


def test_import_by_unix_socket_stores_an_active_swarm_cluster_with_encrypted_credentials(swarm, importer, world):
    response = importer.post(URL, {"name": "swarm-local", "kind": "swarm", "endpoint": swarm.host}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "swarm" and body["state"] == "active" and body["api_endpoint"] == swarm.host
    engine = swarm.docker("version", "-f", "{{.Server.Version}}").stdout.strip()
    assert body["kubernetes_version"] == engine
    cluster = Cluster.objects.get(pk=body["id"])
    assert cluster.credentials == {"endpoint": swarm.host}
    assert ClusterMembership.objects.filter(cluster=cluster, user=world.owner, role="cluster-owner").exists()
    # The credentials column holds ciphertext, not the endpoint.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM clusters_cluster WHERE id = %s", [cluster.pk])
        assert swarm.host not in str(cursor.fetchone()[0])
    # The first sync ran (eager Celery): the default stack is there, no Kubernetes system namespaces.
    assert set(Namespace.objects.filter(cluster=cluster).values_list("name", flat=True)) == {"default"}


def test_import_by_tcp_with_tls_client_certificates(swarm, importer):
    response = importer.post(URL, {"name": "swarm-tls", "kind": "swarm", "endpoint": swarm.tcp, **swarm.tls}, format="json")
    assert response.status_code == 201, response.content
    assert Cluster.objects.get(pk=response.json()["id"]).credentials["tls_cert"] == swarm.tls["tls_cert"]


def test_a_tls_endpoint_with_a_certificate_from_another_ca_is_refused_naming_the_ca(swarm, importer):
    stranger = make_ca("not-the-swarm-ca")
    response = importer.post(URL, {"name": "x", "kind": "swarm", "endpoint": swarm.tcp, **swarm.tls,
                                   "tls_ca": _pem(stranger[0])}, format="json")
    refused(response, "tls_ca", "not trusted by the given CA")


def test_a_client_certificate_the_engine_does_not_trust_is_refused(swarm, importer):
    cert, key = issue(make_ca("rogue"), "corral")
    response = importer.post(URL, {"name": "x", "kind": "swarm", "endpoint": swarm.tcp, "tls_ca": swarm.tls["tls_ca"],
                                   "tls_cert": cert, "tls_key": key}, format="json")
    refused(response, "tls_cert", "client certificate")


def test_tcp_without_certificates_and_bad_pem_are_refused(swarm, importer):
    refused(importer.post(URL, {"name": "x", "kind": "swarm", "endpoint": swarm.tcp}, format="json"), "tls_ca", "required for a tcp://")
    refused(importer.post(URL, {"name": "x", "kind": "swarm", "endpoint": swarm.tcp, **swarm.tls, "tls_key": "not a key"}, format="json"),
            "tls_key", "not PEM")


@pytest.mark.parametrize("endpoint, words", [
    ("http://example.com:2376", ("must start with unix://, tcp:// or ssh://",)),
    ("tcp://127.0.0.1", ("needs a port",)),
    ("unix://relative/docker.sock", ("must be absolute",)),
])
def test_malformed_endpoints_are_refused(importer, endpoint, words, db):
    refused(importer.post(URL, {"name": "x", "kind": "swarm", "endpoint": endpoint}, format="json"), "endpoint", *words)


def test_unreachable_endpoints_are_refused_naming_the_cause(swarm, importer, tmp_path):
    refused(importer.post(URL, {"name": "x", "kind": "swarm", "endpoint": f"unix://{tmp_path}/none.sock"}, format="json"),
            "endpoint", "no Docker socket")
    refused(importer.post(URL, {"name": "x", "kind": "swarm", "endpoint": f"tcp://127.0.0.1:{closed_port()}", **swarm.tls}, format="json"),
            "endpoint", "cannot connect", "connection refused")


def test_the_outbound_policy_applies_to_tcp_endpoints(swarm, importer, settings):
    settings.CLUSTER_DENIED_NETWORKS = ["127.0.0.0/8"]
    refused(importer.post(URL, {"name": "x", "kind": "swarm", "endpoint": swarm.tcp, **swarm.tls}, format="json"),
            "endpoint", "is not allowed", "PORTAL_CLUSTER_DENIED_NETWORKS")


def test_an_engine_that_is_not_a_swarm_manager_is_refused(swarm, importer):
    # A second private dockerd, never joined to a swarm.
    var = swarm.var.parent / f"{swarm.var.name}-plain"
    host = docker_tool.up(var)
    try:
        refused(importer.post(URL, {"name": "x", "kind": "swarm", "endpoint": host}, format="json"),
                "endpoint", "not part of a swarm", "docker swarm init")
    finally:
        docker_tool.down(var)
        import shutil

        shutil.rmtree(var, ignore_errors=True)


def test_kubernetes_and_swarm_fields_do_not_mix_and_importing_needs_the_permission(swarm, world, importer):
    refused(importer.post(URL, {"name": "x", "kind": "swarm", "endpoint": swarm.host, "token": "t"}, format="json"), "token", "not for a Swarm")
    refused(importer.post(URL, {"name": "x", "kind": "swarm"}, format="json"), "endpoint", "required")
    response = importer.post(URL, {"name": "x", "server": "https://127.0.0.1:1", "token": "t", "endpoint": swarm.host}, format="json")
    assert response.status_code == 400 and "only for a Swarm" in str(response.json())
    assert not GlobalRoleBinding.objects.filter(user=world.member).exists()
    response = world.client(world.member).post(URL, {"name": "x", "kind": "swarm", "endpoint": swarm.host}, format="json")
    assert response.status_code == 403
    assert not Cluster.objects.filter(kind="swarm").exists()


def test_the_import_page_imports_a_swarm_and_shows_a_bad_endpoint_on_its_field(swarm, world, client):
    client.force_login(world.owner)
    page = client.post("/clusters/import/", {"name": "swarm-page", "docker_endpoint": swarm.tcp, **swarm.tls, "tls_ca": swarm.tls["tls_cert"]})
    assert page.status_code == 200 and "not trusted by the given CA" in page.content.decode()
    assert not Cluster.objects.filter(kind="swarm").exists()
    response = client.post("/clusters/import/", {"name": "swarm-page", "docker_endpoint": swarm.host})
    cluster = Cluster.objects.get(kind="swarm")
    assert response.status_code == 302 and response["Location"] == f"/clusters/{cluster.pk}/"
    assert cluster.name == "swarm-page" and cluster.credentials == {"endpoint": swarm.host}
