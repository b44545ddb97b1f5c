"""Corral's container image and docker-compose.yml, for real: a private dockerd (Debian's docker.io,
vfs, tools/docker.py) builds the image from the repository's Dockerfile on a debootstrapped Debian
bookworm base (no registry is reachable here), brings the compose stack up with the test's override
(docker-compose.test.yml: PostgreSQL, Redis and OpenLDAP built from Debian packages, the host's
network), and a smoke test goes through it: an LDAP user and the administrator log in, the
administrator imports a sandbox cluster, and its nodes appear on its page, written by the worker
and watcher containers.

Skips (fails under CI=true) without root, docker.io or debootstrap."""

import functools
import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests import waiting
from tests.kube_fixtures import _in_ci
from tools import docker, services

pytestmark = pytest.mark.kube

REPO = Path(__file__).resolve().parents[1]
LDAP_USER = """dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice Compose
sn: Compose
mail: alice@example.org
userPassword: {password}
"""


def require_docker():
    problem = None
    if os.geteuid() != 0:
        problem = "the container test runs dockerd, which needs root here"
    elif not Path("/usr/sbin/dockerd").exists():
        problem = "Debian's docker.io is not installed (apt-get install docker.io docker-compose debootstrap)"
    elif not shutil.which("debootstrap"):
        problem = "debootstrap is not installed (apt-get install debootstrap)"
    else:
        try:
            docker.compose_command()
        except docker.DockerError as exc:
            problem = str(exc)
    if problem:
        if _in_ci():
            pytest.fail(f"CI must build and run the image: {problem}", pytrace=False)
        pytest.skip(problem)


# Each look runs docker or an HTTP request through the stack: once a second is enough.
wait_for = functools.partial(waiting.wait_for, interval=1)


@pytest.fixture(scope="module")
def dockerd():
    require_docker()
    host = docker.up()
    yield host
    docker.down()


class Stack:
    def __init__(self, host, tmp_path):
        self.host = host
        self.project = f"corraltest{os.getpid()}"
        self.web_port = services.free_port()
        seed = tmp_path / "ldap-seed"
        seed.mkdir()
        self.ldap_password = "alice-" + secrets.token_hex(6)
        (seed / "alice.ldif").write_text(LDAP_USER.format(password=self.ldap_password))
        seed.chmod(0o755)
        (seed / "alice.ldif").chmod(0o644)
        self.admin_password = "admin-" + secrets.token_hex(8)
        self.env = {
            **os.environ, "DOCKER_HOST": host, "COMPOSE_PROJECT_NAME": self.project,
            # vfs copies the whole image for each container: creating one takes minutes on a busy host.
            "COMPOSE_HTTP_TIMEOUT": "900", "DOCKER_CLIENT_TIMEOUT": "900",
            "CORRAL_TEST_BASE_IMAGE": docker.base_image(), "CORRAL_TEST_LDAP_SEED": str(seed),
            "CORRAL_TEST_PG_PORT": str(services.free_port()), "CORRAL_TEST_REDIS_PORT": str(services.free_port()),
            "CORRAL_TEST_LDAP_PORT": str(services.free_port()), "CORRAL_TEST_WEB_PORT": str(self.web_port),
            "PORTAL_SECRET_KEY": secrets.token_urlsafe(64), "PORTAL_ADMIN_PASSWORD": self.admin_password,
            "POSTGRES_PASSWORD": "pg-" + secrets.token_hex(6), "LDAP_ADMIN_PASSWORD": "ldap-" + secrets.token_hex(6),
        }
        self.url = f"http://127.0.0.1:{self.web_port}"

    def compose(self, *args, timeout=600, check=True):
        argv = [*docker.compose_command(), "-f", str(REPO / "docker-compose.yml"), "-f", str(REPO / "docker-compose.test.yml"), *args]
        result = subprocess.run(argv, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def logs(self):
        return self.compose("logs", "--no-color", "--tail=40", check=False).stdout[-6000:]

    def login(self, username, password):
        session = requests.Session()
        page = session.get(f"{self.url}/login/", timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        answer = session.post(f"{self.url}/login/", data={"username": username, "password": password, "csrfmiddlewaretoken": token},
                              headers={"Referer": f"{self.url}/login/"}, timeout=30, allow_redirects=False)
        assert answer.status_code == 302, (username, answer.status_code, answer.text[:2000])
        return session


@pytest.fixture(scope="module")
def image(dockerd):
    docker.build_images(dockerd)
    return docker.CORRAL_IMAGE


@pytest.fixture(scope="module")
def stack(dockerd, image, tmp_path_factory):
    stack = Stack(dockerd, tmp_path_factory.mktemp("compose"))
    try:
        started = stack.compose("up", "-d", "--no-build", timeout=900, check=False)
        assert started.returncode == 0, f"compose up failed:\n{started.stderr[-3000:]}\n{stack.logs()}"
        wait_for(lambda: services.port_accepts(stack.web_port), 180, "the web container", stack.logs)
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", timeout=300, check=False)


def test_the_image_runs_as_a_non_root_user(dockerd, image):
    user = docker.docker("image", "inspect", "-f", "{{.Config.User}}", image, host=dockerd).stdout.strip()
    assert user == "10001:10001"
    whoami = docker.docker("run", "--rm", "--network", "none", image, "id", "-u", host=dockerd).stdout.strip()
    assert whoami == "10001"


def test_compose_stack_serves_logs_in_and_follows_an_imported_sandbox(stack, sandbox):
    ready = wait_for(lambda: requests.get(f"{stack.url}/readyz", timeout=10).status_code == 200 or None, 120,
                     "/readyz", lambda: requests.get(f"{stack.url}/readyz", timeout=10).text + stack.logs())
    assert ready
    # Each background container says it is alive (its compose healthcheck runs the same command).
    for service, component in (("worker", "worker"), ("beat", "beat"), ("watcher", "watcher")):
        wait_for(lambda s=service, c=component: stack.compose("exec", "-T", s, "python", "manage.py", "alive", "--component", c,
                                                            check=False).returncode == 0, 120, f"{service} to be alive", stack.logs)

    stack.login("alice", stack.ldap_password)  # an LDAP user of the OpenLDAP container
    with pytest.raises(AssertionError):
        stack.login("alice", "wrong-password")
    admin = stack.login("admin", stack.admin_password)

    form = admin.get(f"{stack.url}/clusters/import/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    answer = admin.post(f"{stack.url}/clusters/import/", timeout=60, allow_redirects=False,
                        headers={"Referer": f"{stack.url}/clusters/import/"},
                        data={"csrfmiddlewaretoken": token, "name": "compose-sandbox",
                              "kubeconfig": sandbox.kubeconfig_path.read_text()})
    assert answer.status_code == 302, answer.text[:3000]
    cluster_page = f"{stack.url}{answer.headers['Location']}"
    nodes = [n["metadata"]["name"] for n in sandbox.api().get("/api/v1/nodes")["items"]]
    assert nodes
    wait_for(lambda: all(name in admin.get(cluster_page, timeout=30).text for name in nodes), 120,
             f"the nodes {nodes} on {cluster_page}", stack.logs)
    listed = admin.get(f"{stack.url}/api/v1/clusters/", timeout=30).json()
    assert [c["name"] for c in listed["results"]] == ["compose-sandbox"], json.dumps(listed)[:1000]
