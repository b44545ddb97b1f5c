"""Importing clusters, against a real sandbox API server: the happy paths and every failure mode,
each a 400 naming the cause with nothing stored."""

import base64
import datetime
import socket

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clusters.models import Cluster, ClusterMembership, Node
from portal.models import AuditEvent, GlobalRoleBinding

pytestmark = pytest.mark.kube

URL = "/api/v1/clusters/import/"


@pytest.fixture(scope="session")
def admin_token(sandbox):
    return sandbox.admin_token()


def b64(text):
    return base64.b64encode(text.encode()).decode()


def kubeconfig(server, ca_pem, token, contexts=("main",), current=True):
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": "u"}} for name in contexts],
    }
    if current:
        config["current-context"] = contexts[0]
    return yaml.safe_dump(config)


def other_ca_pem():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-the-cluster-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_refused(response, field, words):
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body, body
    assert words in " ".join(body[field]), body
    assert not Cluster.objects.filter(name="imported").exists()


def test_import_by_token(world, sandbox, admin_token):
    # A standard user who was granted "Create clusters" imports, and owns what they imported.
    GlobalRoleBinding.objects.create(user=world.nobody, role="clusters-create")
    client = world.client(world.nobody)
    response = client.post(URL, {"name": "imported", "server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "token": admin_token}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["state"] == "active" and body["driver"] == "imported"
    assert body["kubernetes_version"].startswith("v1.36")
    assert admin_token not in response.content.decode()
    assert ClusterMembership.objects.filter(cluster_id=body["id"], user=world.nobody, role="cluster-owner").exists()
    assert AuditEvent.objects.filter(object_type="clusters.cluster", object_id=str(body["id"]), action="create").exists()
    assert Cluster.objects.get(pk=body["id"]).credentials["token"] == admin_token


def test_import_by_kubeconfig_choosing_the_context(world, sandbox, admin_token):
    client = world.client(world.owner)
    text = kubeconfig(sandbox.endpoint, sandbox.ca_pem, admin_token, contexts=("first", "second"), current=False)
    response = client.post(URL, {"name": "imported", "kubeconfig": text}, format="json")
    assert_refused(response, "context", "choose one of: first, second")
    response = client.post(URL, {"name": "imported", "kubeconfig": text, "context": "nope"}, format="json")
    assert_refused(response, "context", "no context 'nope'")
    response = client.post(URL, {"name": "imported", "kubeconfig": text, "context": "second"}, format="json")
    assert response.status_code == 201, response.content


def test_unreachable_host(world, sandbox, admin_token):
    response = world.client(world.owner).post(
        URL, {"name": "imported", "server": f"https://127.0.0.1:{closed_port()}", "ca_data": sandbox.ca_pem, "token": admin_token}, format="json"
    )
    assert_refused(response, "server", "cannot connect")


def test_certificate_not_trusted(world, sandbox, admin_token):
    response = world.client(world.owner).post(
        URL, {"name": "imported", "server": sandbox.endpoint, "ca_data": other_ca_pem(), "token": admin_token}, format="json"
    )
    assert_refused(response, "server", "not trusted")


def test_token_rejected(world, sandbox):
    response = world.client(world.owner).post(
        URL, {"name": "imported", "server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "token": "not-a-token"}, format="json"
    )
    assert_refused(response, "token", "rejected the credentials")


def test_missing_permission_is_named(world, sandbox, kubectl):
    kubectl("create", "serviceaccount", "weak")
    kubectl("create", "rolebinding", "weak-view", "--clusterrole=view", f"--serviceaccount={kubectl.namespace}:weak")
    token = kubectl("create", "token", "weak").strip()
    response = world.client(world.owner).post(
        URL, {"name": "imported", "server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "token": token}, format="json"
    )
    assert_refused(response, "token", '"list nodes"')


def test_kubeconfig_in_the_kubeconfig_field_names_it(world, sandbox, admin_token):
    response = world.client(world.owner).post(
        URL, {"name": "imported", "kubeconfig": kubeconfig(sandbox.endpoint, sandbox.ca_pem, "bad-token")}, format="json"
    )
    assert_refused(response, "kubeconfig", "rejected the credentials")


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "may not be blank"),
        ("{not: [yaml", "not valid YAML"),
        ("kind: Pod\n", "not a kubeconfig"),
        (yaml.safe_dump({"kind": "Config", "contexts": []}), "no contexts"),
        (yaml.safe_dump({"kind": "Config", "current-context": "a", "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}],
                         "clusters": [{"name": "c", "cluster": {"server": "https://h", "certificate-authority": "/etc/ca.crt"}}],
                         "users": [{"name": "u", "user": {"token": "t"}}]}), "refers to a file"),
        (yaml.safe_dump({"kind": "Config", "current-context": "a", "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}],
                         "clusters": [{"name": "c", "cluster": {"server": "https://h"}}],
                         "users": [{"name": "u", "user": {"exec": {"command": "aws"}}}]}), "plugin"),
    ],
)
def test_bad_kubeconfigs_are_explained(world, text, words):
    response = world.client(world.owner).post(URL, {"name": "imported", "kubeconfig": text}, format="json")
    assert_refused(response, "kubeconfig", words)


def test_both_or_neither_way_is_refused(world):
    client = world.client(world.owner)
    assert client.post(URL, {"name": "imported"}, format="json").status_code == 400
    assert client.post(URL, {"name": "imported", "kubeconfig": "x", "token": "y"}, format="json").status_code == 400
    assert client.post(URL, {"name": "alpha", "server": "https://x", "token": "t"}, format="json").json()["name"]


def test_replace_credentials_checks_before_storing(world, sandbox, admin_token):
    client = world.client(world.owner)
    cluster_id = client.post(
        URL, {"name": "imported", "server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "token": admin_token}, format="json"
    ).json()["id"]
    url = f"/api/v1/clusters/{cluster_id}/credentials/"
    response = client.post(url, {"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "token": "wrong"}, format="json")
    assert response.status_code == 400
    assert Cluster.objects.get(pk=cluster_id).credentials["token"] == admin_token
    new_token = sandbox.admin_token()
    response = client.post(url, {"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "token": new_token}, format="json")
    assert response.status_code == 200, response.content
    assert Cluster.objects.get(pk=cluster_id).credentials["token"] == new_token
    assert world.client(world.viewer).post(url, {"server": sandbox.endpoint, "token": new_token}, format="json").status_code == 404


def test_removing_an_imported_cluster_forgets_it_but_leaves_the_cluster_alone(
    world, sandbox, admin_token, kubectl, django_capture_on_commit_callbacks
):
    client = world.client(world.owner)
    cluster_id = client.post(
        URL, {"name": "imported", "server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "token": admin_token}, format="json"
    ).json()["id"]
    Node.objects.create(cluster_id=cluster_id, uid="n1", name="kwok-node-0")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/clusters/{cluster_id}/").status_code == 202
    assert not Cluster.objects.filter(pk=cluster_id).exists()
    assert not Node.objects.filter(cluster_id=cluster_id).exists()
    assert kubectl("get", "namespace", kubectl.namespace, "-o", "name").strip() == f"namespace/{kubectl.namespace}"


def test_portal_and_admin_import_forms(world, sandbox, admin_token):
    from django.test import Client

    client = Client()
    client.force_login(world.owner)
    page = client.post("/clusters/import/", {"name": "imported", "server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "token": "wrong"})
    assert page.status_code == 200 and "rejected the credentials" in page.content.decode()
    assert not Cluster.objects.filter(name="imported").exists()
    upload = kubeconfig(sandbox.endpoint, sandbox.ca_pem, admin_token)
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post("/clusters/import/", {"name": "imported", "kubeconfig_file": SimpleUploadedFile("config", upload.encode())})
    assert response.status_code == 302
    cluster = Cluster.objects.get(name="imported")
    assert response["Location"] == f"/clusters/{cluster.pk}/"
    assert cluster.projects.filter(name__in=["System", "Default"]).count() == 2

    admin = Client()
    admin.force_login(world.admin)
    assert "Import a cluster" in admin.get("/admin/clusters/cluster/").content.decode()
    page = admin.post("/admin/clusters/cluster/import/", {"name": "from-admin", "kubeconfig": "kind: Pod"})
    assert "not a kubeconfig" in page.content.decode()
    response = admin.post("/admin/clusters/cluster/import/", {"name": "from-admin", "kubeconfig": upload})
    assert response.status_code == 302 and Cluster.objects.filter(name="from-admin", state="active").exists()


def test_missing_impersonate_permission_is_named(world, sandbox, kubectl):
    """kubectl through Corral impersonates each user: credentials that may read everything but
    not impersonate are refused on import, naming what is missing."""
    reader = f"{kubectl.namespace}-reader"
    kubectl("create", "serviceaccount", "reader")
    kubectl("create", "clusterrole", reader, "--verb=get,list,watch", "--resource=nodes,namespaces,pods,services,events,deployments,statefulsets,daemonsets,jobs,cronjobs")
    kubectl("create", "clusterrolebinding", reader, f"--clusterrole={reader}", f"--serviceaccount={kubectl.namespace}:reader")
    try:
        token = kubectl("create", "token", "reader").strip()
        response = world.client(world.owner).post(
            URL, {"name": "imported", "server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "token": token}, format="json"
        )
        assert_refused(response, "token", '"impersonate users", "impersonate groups"')
    finally:
        kubectl("delete", "clusterrolebinding", reader)
        kubectl("delete", "clusterrole", reader)
