"""The outbound policy (PORTAL_CLUSTER_ALLOWED_NETWORKS / PORTAL_CLUSTER_DENIED_NETWORKS): Corral
connects to a cluster's API server only on allowed, not denied networks, judged on the address the
host name resolves to; refusals name the address and the rule, and nothing is stored."""

import os
import socket
import subprocess
import sys

import pytest

from clusters import health, sync
from clusters.kube import outbound
from clusters.models import Cluster

URL = "/api/v1/clusters/import/"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOPBACK = ["127.0.0.0/8", "::1/128"]


@pytest.fixture(scope="session")
def admin_token(sandbox):
    return sandbox.admin_token()


def import_body(server, sandbox, token):
    return {"name": "imported", "server": server, "ca_data": sandbox.ca_pem, "token": token}


def assert_refused(response, words):
    assert response.status_code == 400, response.content
    assert words in " ".join(response.json()["server"]), response.json()
    assert not Cluster.objects.filter(name="imported").exists()


@pytest.mark.parametrize("address, words", [
    ("169.254.169.254", "it is in 169.254.0.0/16 (PORTAL_CLUSTER_DENIED_NETWORKS)"),
    ("fe80::1", "it is in fe80::/10"),
    ("fd00:ec2::254", "it is in fd00:ec2::254/128"),
    ("::ffff:169.254.169.254", "it is in 169.254.0.0/16"),  # IPv4-mapped IPv6 is the IPv4 address
    ("127.0.0.1", None),
    ("10.1.2.3", None),
])
def test_default_policy_denies_link_local_and_metadata_only(address, words):
    reason = outbound.refusal(address)
    assert reason == words if words is None else words in reason


def test_unspecified_address_counts_as_this_host(settings):
    settings.CLUSTER_DENIED_NETWORKS = LOOPBACK
    assert "127.0.0.0/8" in outbound.refusal("0.0.0.0")
    assert "::1/128" in outbound.refusal("::")


@pytest.mark.kube
def test_import_to_a_denied_address_is_refused_naming_the_rule(world, sandbox, admin_token):
    response = world.client(world.owner).post(URL, import_body("https://169.254.169.254", sandbox, admin_token), format="json")
    assert_refused(response, "connecting to 169.254.169.254 is not allowed: it is in 169.254.0.0/16 (PORTAL_CLUSTER_DENIED_NETWORKS)")


@pytest.mark.kube
def test_the_sandbox_imports_while_its_network_is_allowed_and_not_once_denied(world, sandbox, admin_token, settings):
    client = world.client(world.owner)
    port = sandbox.endpoint.rsplit(":", 1)[1]
    settings.CLUSTER_DENIED_NETWORKS = [*settings.CLUSTER_DENIED_NETWORKS, *LOOPBACK]
    response = client.post(URL, import_body(sandbox.endpoint, sandbox, admin_token), format="json")
    assert_refused(response, "connecting to 127.0.0.1 is not allowed: it is in 127.0.0.0/8 (PORTAL_CLUSTER_DENIED_NETWORKS)")
    # A host name is judged by what it resolves to, not by the URL's text.
    response = client.post(URL, import_body(f"https://localhost:{port}", sandbox, admin_token), format="json")
    assert_refused(response, "connecting to localhost (127.0.0.1) is not allowed: it is in 127.0.0.0/8")

    settings.CLUSTER_DENIED_NETWORKS = ["169.254.0.0/16"]
    response = client.post(URL, import_body(sandbox.endpoint, sandbox, admin_token), format="json")
    assert response.status_code == 201, response.content


@pytest.mark.kube
def test_allowed_list_mode_refuses_every_other_network(world, sandbox, admin_token, settings):
    settings.CLUSTER_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    response = world.client(world.owner).post(URL, import_body(sandbox.endpoint, sandbox, admin_token), format="json")
    assert_refused(response, "connecting to 127.0.0.1 is not allowed: it is not in PORTAL_CLUSTER_ALLOWED_NETWORKS (10.0.0.0/8)")


@pytest.mark.kube
def test_replacing_credentials_with_a_denied_address_keeps_the_old_ones(world, sandbox, admin_token):
    client = world.client(world.owner)
    cluster_id = client.post(URL, import_body(sandbox.endpoint, sandbox, admin_token), format="json").json()["id"]
    response = client.post(f"/api/v1/clusters/{cluster_id}/credentials/",
                           {"server": "https://169.254.169.254:6443", "ca_data": sandbox.ca_pem, "token": admin_token}, format="json")
    assert response.status_code == 400
    assert "169.254.0.0/16 (PORTAL_CLUSTER_DENIED_NETWORKS)" in " ".join(response.json()["server"])
    assert Cluster.objects.get(pk=cluster_id).credentials["server"] == sandbox.endpoint


@pytest.fixture
def resolver(monkeypatch):
    """Tests have no DNS server of their own: a fake resolver gives names the addresses a hostile
    DNS would.  Returns the dict to fill with name -> addresses."""
    names, real = {}, socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host not in names:
            return real(host, port, family, type, proto, flags)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port))) for address in names[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


@pytest.mark.kube
def test_a_name_resolving_to_a_denied_address_is_refused_and_the_allowed_ones_used(db, sandbox, resolver):
    port = sandbox.endpoint.rsplit(":", 1)[1]
    cluster = Cluster.objects.create(
        name="by-name", driver="imported", state="active",
        # kubernetes.default.svc is in the sandbox's serving certificate, so TLS checks out.
        credentials={"server": f"https://kubernetes.default.svc:{port}", "ca_data": sandbox.ca_pem,
                     "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    resolver["kubernetes.default.svc"] = ["169.254.169.254", "127.0.0.1"]
    assert health.check(cluster.pk) == "active"

    resolver["kubernetes.default.svc"] = ["169.254.169.254"]
    with pytest.raises(sync.SyncFailed, match=r"kubernetes\.default\.svc \(169\.254\.169\.254\) is not allowed: it is in 169\.254\.0\.0/16"):
        sync.sync(cluster.pk)


@pytest.mark.kube
def test_health_check_marks_a_cluster_on_a_newly_denied_network_unavailable_at_once(db, sandbox, settings):
    cluster = Cluster.objects.create(
        name="health", driver="imported", state="active",
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    assert health.check(cluster.pk) == "active"
    settings.CLUSTER_DENIED_NETWORKS = LOOPBACK
    assert health.check(cluster.pk) == "unavailable"  # no grace period: this is no passing blip
    cluster.refresh_from_db()
    assert cluster.last_error == "connecting to 127.0.0.1 is not allowed: it is in 127.0.0.0/8 (PORTAL_CLUSTER_DENIED_NETWORKS)"


def run_check(**env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    environ.update(env, CORRAL_VAR_DIR="/tmp/corral-settings-test")
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)


def test_a_bad_network_in_the_environment_stops_startup_naming_it():
    result = run_check(PORTAL_CLUSTER_DENIED_NETWORKS="169.254.0.0/16, 10.0.0.300/8")
    assert result.returncode != 0
    assert "ImproperlyConfigured: PORTAL_CLUSTER_DENIED_NETWORKS: '10.0.0.300/8' is not a network in CIDR notation" in result.stderr
    result = run_check(PORTAL_CLUSTER_ALLOWED_NETWORKS="")
    assert result.returncode != 0
    assert "PORTAL_CLUSTER_ALLOWED_NETWORKS is empty" in result.stderr
