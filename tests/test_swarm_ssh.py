"""A Swarm imported by ssh://, against a real OpenSSH server (Debian's openssh-server) started here
on a free port of the test swarm's own loopback address, with a host key made here and one
authorized key whose forced command is Debian's docker CLI running `docker system dial-stdio` on
the test swarm's socket (tests/swarm_fixtures.py) — what an administrator sets up for Corral:

    restrict,command="docker system dial-stdio" ssh-ed25519 AAAA... corral

Import succeeds and syncs; the event stream and the health check work over it; a wrong or missing
host key, a key the server refuses, a denied network, a remote without Docker are each a 400 naming
the cause with nothing stored; a stranger tenant sees nothing of the cluster."""

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusters.models import Cluster, Node, Workload
from tests.swarm_fixtures import _free_tcp_port, _in_ci
from tests.waiting import wait_for

URL = "/api/v1/clusters/import/"
SSHD = Path("/usr/sbin/sshd")
DOCKER_CLI = Path("/usr/bin/docker")  # Debian's docker.io, as on a manager


@dataclass
class SSHServer:
    endpoint: str
    host_key: str  # a known_hosts line
    fingerprint: str
    key: str  # the authorized private key (OpenSSH)
    var: Path

    def log(self):
        path = self.var / "sshd.log"
        return path.read_text() if path.exists() else ""


def _keygen(path, kind="ed25519", *extra):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", path.name, *extra, "-f", str(path)], check=True, capture_output=True)
    return path.read_text(), (path.parent / f"{path.name}.pub").read_text().strip()


def _start_sshd(var, address, port, authorized):
    var.mkdir(parents=True)
    _keygen(var / "host_key")
    (var / "authorized_keys").write_text(authorized)
    config = var / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress {address}:{port}", f"HostKey {var / 'host_key'}", f"PidFile {var / 'sshd.pid'}",
        f"AuthorizedKeysFile {var / 'authorized_keys'}", "StrictModes no", "UsePAM no", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "AllowUsers root", "LogLevel VERBOSE",
        "MaxStartups 100", "MaxSessions 100", ""]))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    process = subprocess.Popen([str(SSHD), "-D", "-f", str(config), "-E", str(var / "sshd.log")], stdin=subprocess.DEVNULL)
    wait_for(lambda: "Server listening" in (var / "sshd.log").read_text() if (var / "sshd.log").exists() else False, 20,
             "sshd to listen", lambda: (var / "sshd.log").read_text() if (var / "sshd.log").exists() else "no log")
    return process


@pytest.fixture(scope="module")
def sshd(swarm):
    problem = None if SSHD.exists() else "Debian's openssh-server is not installed (apt-get install openssh-server)"
    problem = problem or (None if DOCKER_CLI.exists() else "Debian's docker.io is not installed")
    if problem:
        if _in_ci():
            pytest.fail(f"CI must run a real SSH server: {problem}", pytrace=False)
        pytest.skip(problem)
    var = swarm.var / f"sshd-{os.getpid()}"
    shutil.rmtree(var, ignore_errors=True)
    port = _free_tcp_port(swarm.address)
    keys = swarm.var / f"ssh-keys-{os.getpid()}"
    shutil.rmtree(keys, ignore_errors=True)
    keys.mkdir(mode=0o700)
    private, public = _keygen(keys / "corral")
    forced = f'restrict,command="exec {DOCKER_CLI} -H {swarm.host} system dial-stdio" {public}\n'
    process = _start_sshd(var, swarm.address, port, forced)
    try:
        host_public = (var / "host_key.pub").read_text().split()
        fingerprint = subprocess.run(["ssh-keygen", "-lf", str(var / "host_key.pub")], capture_output=True, text=True,
                                     check=True).stdout.split()[1]
        yield SSHServer(endpoint=f"ssh://root@{swarm.address}:{port}", host_key=f"[{swarm.address}]:{port} {host_public[0]} {host_public[1]}",
                        fingerprint=fingerprint, key=private, var=var)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(var, ignore_errors=True)
        shutil.rmtree(keys, ignore_errors=True)


@pytest.fixture
def importer(world):
    return world.client(world.owner)


def body(sshd, **changes):
    return {"name": "swarm-ssh", "kind": "swarm", "endpoint": sshd.endpoint, "ssh_key": sshd.key, "ssh_host_key": sshd.host_key, **changes}


def refused(response, field, *words):
    assert response.status_code == 400, response.content
    message = " ".join(response.json()[field])
    assert all(w in message for w in words), message
    assert not Cluster.objects.filter(kind="swarm").exists()
    return message


@pytest.mark.django_db(transaction=True)
def test_import_over_ssh_syncs_follows_events_and_checks_health(swarm, sshd, world, swarm_service_name):
    from clusters import health
    from clusters.swarm.watcher import SwarmWatch

    swarm.docker("service", "create", "-q", "--detach", "--name", swarm_service_name, "--replicas", "1", swarm.image)
    try:
        response = world.client(world.owner).post(URL, body(sshd), format="json")
        assert response.status_code == 201, response.content
        created = response.json()
        assert created["state"] == "active" and created["api_endpoint"] == sshd.endpoint
        cluster = Cluster.objects.get(pk=created["id"])
        assert cluster.credentials["ssh_key"].strip() == sshd.key.strip() and cluster.credentials["ssh_host_key"] == sshd.host_key

        def raw():
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("SELECT credentials::text FROM clusters_cluster WHERE id = %s", [cluster.pk])
                return cursor.fetchone()[0]
        assert "PRIVATE KEY" not in raw()  # encrypted at rest
        # The first sync (eager Celery) read the swarm over ssh: its node and the service.
        nodes = swarm.docker("node", "ls", "-q").stdout.split()
        assert sorted(Node.objects.filter(cluster=cluster).values_list("uid", flat=True)) == sorted(nodes)
        assert Workload.objects.filter(cluster=cluster, name=swarm_service_name).exists()
        assert "Accepted publickey for root" in sshd.log()

        # The live event stream over ssh: a scale with the CLI reaches the database (sooner than the
        # watcher's POLL_SECONDS resync could).
        watch = SwarmWatch(cluster.pk, None)
        watch.start()
        try:
            wait_for(watch.following.is_set, 60, "the first full read of the swarm over ssh")
            started = time.monotonic()
            swarm.docker("service", "scale", "--detach", f"{swarm_service_name}=2")
            desired = lambda: Workload.objects.get(cluster=cluster, name=swarm_service_name).desired_replicas  # noqa: E731
            wait_for(lambda: desired() == 2, 6, "the scale to reach the database through the event stream")
            assert time.monotonic() - started < 6
        finally:
            watch.stop(wait=10)
        assert watch.ended.is_set()

        # Health over ssh: active; with sshd's host key no longer the one given, unavailable saying why.
        assert health._check_swarm(cluster) == (cluster.kubernetes_version or created["kubernetes_version"], None, False)
        cluster.credentials = {**cluster.credentials, "ssh_host_key": sshd.host_key.rsplit(" ", 1)[0] + " " + _other_public_key(swarm)}
        version, error, not_allowed = health._check_swarm(cluster)
        assert version is None and "not the one given in ssh_host_key" in error and not not_allowed
    finally:
        swarm.docker("service", "rm", swarm_service_name, check=False)


def _other_public_key(swarm):
    path = swarm.var / f"other-{os.getpid()}"
    for p in (path, Path(f"{path}.pub")):
        p.unlink(missing_ok=True)
    _, public = _keygen(path)
    return public.split()[1]


def test_a_fingerprint_serves_as_the_host_key_and_a_wrong_host_key_is_refused(swarm, sshd, importer):
    response = importer.post(URL, body(sshd, ssh_host_key=f"# ssh-keygen -lf\n256 {sshd.fingerprint} root@manager (ED25519)"), format="json")
    assert response.status_code == 201, response.content
    Cluster.objects.filter(pk=response.json()["id"]).delete()
    wrong = f"[{swarm.address}]:1 ssh-ed25519 {_other_public_key(swarm)}"
    message = refused(importer.post(URL, body(sshd, ssh_host_key=wrong), format="json"), "ssh_host_key", "not the one given")
    assert sshd.fingerprint in message  # names the key the server showed
    refused(importer.post(URL, body(sshd, ssh_host_key=""), format="json"), "ssh_host_key", "required", "does not trust a host key on first use")
    refused(importer.post(URL, body(sshd, ssh_host_key="SHA256:tooshort"), format="json"), "ssh_host_key", "line 1")


def test_a_key_the_server_does_not_authorize_is_refused(swarm, sshd, importer, tmp_path):
    stranger, _ = _keygen(tmp_path / "stranger")
    refused(importer.post(URL, body(sshd, ssh_key=stranger), format="json"), "ssh_key", "refused the key for user 'root'")
    refused(importer.post(URL, body(sshd, endpoint=sshd.endpoint.replace("root@", "nobody@")), format="json"),
            "ssh_key", "refused the key for user 'nobody'")
    refused(importer.post(URL, body(sshd, ssh_key="not a key"), format="json"), "ssh_key", "is not a private key")
    encrypted, _ = _keygen(tmp_path / "locked", "ed25519")
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", "passphrase", "-f", str(tmp_path / "locked")], check=True, capture_output=True)
    refused(importer.post(URL, body(sshd, ssh_key=(tmp_path / "locked").read_text()), format="json"), "ssh_key", "passphrase")
    refused(importer.post(URL, body(sshd, ssh_key=""), format="json"), "ssh_key", "required")


def test_a_pem_private_key_is_accepted(swarm, sshd, tmp_path):
    from clusters.swarm import ssh

    pem, _ = _keygen(tmp_path / "pem", "ecdsa", "-m", "PEM")
    assert "BEGIN EC PRIVATE KEY" in pem
    assert ssh.private_key(pem).get_name() == "ecdsa-sha2-nistp256"


def test_the_outbound_policy_applies_to_ssh_endpoints_before_connecting(swarm, sshd, importer, settings):
    settings.CLUSTER_DENIED_NETWORKS = ["127.0.0.0/8"]
    before = sshd.log().count("Connection from")
    refused(importer.post(URL, body(sshd), format="json"), "endpoint", "is not allowed", "PORTAL_CLUSTER_DENIED_NETWORKS")
    assert sshd.log().count("Connection from") == before  # not a packet sent


def test_unreachable_hosts_bad_endpoints_and_a_login_without_docker_are_refused(swarm, sshd, importer, tmp_path):
    closed = _free_tcp_port(swarm.address)
    refused(importer.post(URL, body(sshd, endpoint=f"ssh://root@{swarm.address}:{closed}"), format="json"),
            "endpoint", "cannot connect to the SSH server")
    refused(importer.post(URL, body(sshd, endpoint="ssh://root@"), format="json"), "endpoint", "names no host")
    refused(importer.post(URL, body(sshd, endpoint=f"ssh://{swarm.address}"), format="json"), "endpoint", "names no user")
    refused(importer.post(URL, body(sshd, tls_ca="x"), format="json"), "tls_ca", "ssh_key and ssh_host_key")
    refused(importer.post(URL, {"name": "x", "kind": "swarm", "endpoint": swarm.host, "ssh_key": sshd.key}, format="json"),
            "ssh_key", "for ssh:// endpoints")
    # A key whose forced command is a docker CLI pointed at no engine: logged in, no API.
    key = authorize(sshd, tmp_path / "nodocker", f"unix://{tmp_path}/none.sock")
    refused(importer.post(URL, body(sshd, ssh_key=key), format="json"), "endpoint", "worked but gave no Docker API", "dial-stdio",
            "exited 1", "no such file or directory")


def authorize(sshd, path, docker_host):
    """A new key in sshd's authorized_keys (read at each login) whose forced command is the docker
    CLI's dial-stdio on ``docker_host``; returns the private key."""
    private, public = _keygen(path)
    with (sshd.var / "authorized_keys").open("a") as keys:
        keys.write(f'restrict,command="exec {DOCKER_CLI} -H {docker_host} system dial-stdio" {public}\n')
    return private


def test_an_engine_over_ssh_that_is_not_a_swarm_manager_is_refused(swarm, sshd, importer, tmp_path):
    from tools import docker as docker_tool

    var = swarm.var.parent / f"{swarm.var.name}-ssh-plain"
    host = docker_tool.up(var)  # a second private dockerd, in no swarm
    try:
        key = authorize(sshd, tmp_path / "plain", host)
        refused(importer.post(URL, body(sshd, ssh_key=key), format="json"), "endpoint", "not part of a swarm", "docker swarm init")
    finally:
        docker_tool.down(var)
        shutil.rmtree(var, ignore_errors=True)


def test_a_stranger_sees_nothing_of_an_ssh_imported_swarm(swarm, sshd, world, importer):
    response = importer.post(URL, body(sshd), format="json")
    assert response.status_code == 201, response.content
    pk = response.json()["id"]
    from clusters import sync

    sync.sync(pk)  # over ssh (this test's transaction never commits, so the import's own sync does not run)
    stranger, owner = world.client(world.stranger), world.client(world.owner)
    assert stranger.get(f"/api/v1/clusters/{pk}/").status_code == 404
    assert pk not in [c["id"] for c in stranger.get("/api/v1/clusters/").json()["results"]]
    for path in ("nodes", "namespaces"):
        assert owner.get(f"/api/v1/{path}/?cluster={pk}").json()["count"] > 0, path
        assert stranger.get(f"/api/v1/{path}/?cluster={pk}").json()["count"] == 0, path
    assert "ssh_key" not in str(owner.get(f"/api/v1/clusters/{pk}/").json())  # credentials never leave Corral
    assert stranger.post(f"/api/v1/clusters/{pk}/sync/").status_code == 404
    # The host key rotated: its owner gives the new one (checked like an import); a stranger cannot.
    update = {"kind": "swarm", "endpoint": sshd.endpoint, "ssh_key": sshd.key, "ssh_host_key": sshd.fingerprint}
    assert stranger.post(f"/api/v1/clusters/{pk}/credentials/", update, format="json").status_code == 404
    assert owner.post(f"/api/v1/clusters/{pk}/credentials/", {**update, "ssh_host_key": "ssh-ed25519 " + _other_public_key(swarm)},
                      format="json").status_code == 400
    assert Cluster.objects.get(pk=pk).credentials["ssh_host_key"] == sshd.host_key
    assert owner.post(f"/api/v1/clusters/{pk}/credentials/", update, format="json").status_code == 200
    assert Cluster.objects.get(pk=pk).credentials["ssh_host_key"] == sshd.fingerprint


def test_the_import_page_imports_over_ssh_and_shows_a_wrong_host_key_on_its_field(swarm, sshd, world, client):
    client.force_login(world.owner)
    form = {"name": "swarm-ssh-page", "docker_endpoint": sshd.endpoint, "ssh_key": sshd.key}
    page = client.post("/clusters/import/", {**form, "ssh_host_key": f"ssh-ed25519 {_other_public_key(swarm)}"})
    assert page.status_code == 200 and "not the one given in ssh_host_key" in page.content.decode()
    assert page.context["form"].errors["ssh_host_key"]
    assert not Cluster.objects.filter(kind="swarm").exists()
    response = client.post("/clusters/import/", {**form, "ssh_host_key": sshd.host_key})
    cluster = Cluster.objects.get(kind="swarm")
    assert response.status_code == 302 and response["Location"] == f"/clusters/{cluster.pk}/"
    assert cluster.credentials["endpoint"] == sshd.endpoint and cluster.credentials["ssh_host_key"] == sshd.host_key


def test_a_client_logs_in_again_when_its_ssh_connection_drops(swarm, sshd, db):
    from clusters.swarm.client import cause_of, describe_error, docker_client

    client = docker_client({"endpoint": sshd.endpoint, "ssh_key": sshd.key, "ssh_host_key": sshd.host_key}, timeout=10)
    try:
        first = client.api._custom_adapter.ssh_client.get_transport()
        first.close()  # the connection drops (sshd restarted, a network blip)
        assert client.api.info()["Swarm"]["LocalNodeState"] == "active"
        assert client.api._custom_adapter.ssh_client.get_transport() is not first
        # Logging in again checks the host key again: a changed one is named, not retried blindly.
        adapter = client.api._custom_adapter
        adapter.corral_credentials = {**adapter.corral_credentials, "ssh_host_key": f"ssh-ed25519 {_other_public_key(swarm)}"}
        adapter.ssh_client.get_transport().close()
        with pytest.raises(Exception) as caught:
            client.api.info()
        assert "not the one given in ssh_host_key" in describe_error(caught.value) and cause_of(caught.value) == "host_key"
    finally:
        client.close()
