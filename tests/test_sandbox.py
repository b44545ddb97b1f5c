"""Sandboxes are real clusters: upstream controllers, scheduler, admission and RBAC all answer."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from clusters.sandbox import MissingBinaries, Sandbox, SandboxError
from clusters.sandbox.binaries import REPO_ROOT, kube_bin_dir
from tests.kube_fixtures import require_kube_binaries

pytestmark = pytest.mark.kube


def wait_for(check, timeout=60, interval=0.5, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def get_json(kubectl, *args):
    return json.loads(kubectl("get", *args, "-o", "json"))


def running_pods(kubectl, selector):
    pods = get_json(kubectl, "pods", "-l", selector)["items"]
    return [
        p for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def test_walkthrough_deployment_scale_selfheal_and_service(kubectl):
    kubectl("create", "deployment", "nginx", "--image=nginx")

    replica_sets = wait_for(
        lambda: get_json(kubectl, "replicasets", "-l", "app=nginx")["items"], message="the ReplicaSet"
    )
    assert replica_sets[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    pods = wait_for(lambda: running_pods(kubectl, "app=nginx"), message="a Running pod")
    assert len(pods) == 1
    assert pods[0]["spec"]["nodeName"].startswith("kwok-node-")  # placed by the real scheduler
    assert pods[0]["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"

    kubectl("scale", "deployment", "nginx", "--replicas=3")
    pods = wait_for(lambda: len(running_pods(kubectl, "app=nginx")) == 3 and running_pods(kubectl, "app=nginx"),
                    message="3 Running pods")

    victim = pods[0]["metadata"]["name"]
    kubectl("delete", "pod", victim, "--wait=false")
    pods = wait_for(
        lambda: (
            (current := running_pods(kubectl, "app=nginx"))
            and len(current) == 3
            and victim not in {p["metadata"]["name"] for p in current}
            and current
        ),
        message="the ReplicaSet to replace the deleted pod",
    )

    kubectl("expose", "deployment", "nginx", "--port", "80")
    service = get_json(kubectl, "service", "nginx")
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["clusterIP"].startswith("10.96.")
    pod_ips = {p["status"]["podIP"] for p in pods}

    def endpoint_ips():
        endpoints = get_json(kubectl, "endpoints", "nginx")
        return {a["ip"] for s in endpoints.get("subsets", []) for a in s.get("addresses", [])}

    wait_for(lambda: endpoint_ips() == pod_ips, message=f"endpoints {pod_ips}")
    slices = get_json(kubectl, "endpointslices", "-l", "kubernetes.io/service-name=nginx")["items"]
    assert {a for s in slices for e in s["endpoints"] for a in e["addresses"]} == pod_ips


POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
  - name: app
    image: nginx
    resources: {{requests: {{cpu: 600m, memory: 64Mi}}, limits: {{cpu: 600m, memory: 64Mi}}}}
"""


def test_resource_quota_rejects_the_pod_that_would_exceed_it(kubectl, kube_namespace):
    kubectl("create", "quota", "small", "--hard=requests.cpu=1,pods=5")
    # Admission only enforces a quota once the quota controller has computed its usage.
    wait_for(lambda: get_json(kubectl, "resourcequota", "small")["status"].get("used"), message="quota status")

    kubectl("apply", "-f", "-", input=POD.format(name="first"))
    rejected = kubectl.run("apply", "-f", "-", input=POD.format(name="second"))

    assert rejected.returncode != 0
    assert "forbidden: exceeded quota: small" in rejected.stderr
    assert "requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1" in rejected.stderr
    assert [p["metadata"]["name"] for p in get_json(kubectl, "pods")["items"]] == ["first"]


def test_limit_range_defaults_are_applied_by_admission(kubectl):
    kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: LimitRange
metadata: {name: defaults}
spec:
  limits:
  - type: Container
    default: {cpu: 250m, memory: 128Mi}
    defaultRequest: {cpu: 100m, memory: 64Mi}
""")
    kubectl("run", "bare", "--image=nginx")

    resources = get_json(kubectl, "pod", "bare")["spec"]["containers"][0]["resources"]
    assert resources == {
        "limits": {"cpu": "250m", "memory": "128Mi"},
        "requests": {"cpu": "100m", "memory": "64Mi"},
    }


def test_user_without_rolebinding_is_forbidden_until_bound(kubectl, kube_namespace):
    denied = kubectl.run("get", "pods", "--as=jane")
    assert denied.returncode != 0
    assert (
        f'User "jane" cannot list resource "pods" in API group "" in the namespace "{kube_namespace}"'
        in denied.stderr
    )
    assert kubectl.run("auth", "can-i", "list", "pods", "--as=jane").stdout.strip() == "no"

    kubectl("create", "rolebinding", "jane-view", "--clusterrole=view", "--user=jane")
    wait_for(lambda: kubectl.run("get", "pods", "--as=jane").returncode == 0, message="RBAC to allow jane")
    created = kubectl.run("run", "jane-pod", "--image=nginx", "--as=jane")  # view cannot create
    assert created.returncode != 0
    assert 'User "jane" cannot create resource "pods"' in created.stderr


def test_impersonated_request_gets_http_403(sandbox, kube_namespace):
    from clusters.sandbox.api import APIError

    api = sandbox.api()
    with pytest.raises(APIError) as denied:
        api.request("GET", f"/api/v1/namespaces/{kube_namespace}/pods", headers={"Impersonate-User": "jane"})
    assert denied.value.status == 403
    assert denied.value.body["reason"] == "Forbidden"


def test_admin_token_authenticates_as_cluster_admin(sandbox):
    token = sandbox.admin_token()
    context = ssl.create_default_context(cadata=sandbox.ca_pem)
    request = urllib.request.Request(
        f"{sandbox.endpoint}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        review = json.load(response)
    assert review["status"]["userInfo"]["username"] == "system:serviceaccount:kube-system:corral-admin"

    request = urllib.request.Request(
        f"{sandbox.endpoint}/api/v1/nodes", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        nodes = json.load(response)["items"]
    assert len(nodes) == 3


def test_nodes_are_ready_with_realistic_capacity(sandbox):
    nodes = sandbox.api().get("/api/v1/nodes")["items"]
    assert len(nodes) == 3
    for node in nodes:
        assert node["status"]["capacity"]["cpu"] == "4"
        assert node["status"]["capacity"]["memory"] == "16Gi"
        assert node["status"]["capacity"]["pods"] == "110"
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
    version = sandbox.api().get("/version")
    assert version["gitVersion"] == "v1.36.3"


# -- errors are messages, not tracebacks --------------------------------------------------------------


def manage(*args, env=None):
    return subprocess.run(
        [sys.executable, "manage.py", "sandbox", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, **(env or {})},
    )


def test_starting_a_running_sandbox_says_so(sandbox):
    with pytest.raises(SandboxError, match="is already running at https://127.0.0.1:"):
        Sandbox(sandbox.name, sandbox.root).up()

    result = manage("--root", str(sandbox.root), "up", sandbox.name)
    assert result.returncode == 1
    assert f"CommandError: sandbox '{sandbox.name}' is already running" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_reported(sandbox, tmp_path):
    result = manage("--root", str(tmp_path), "up", "taken", "--port", str(sandbox.port))
    assert result.returncode == 1
    assert f"port {sandbox.port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_stopping_what_is_not_running_says_so(tmp_path):
    with pytest.raises(SandboxError, match="sandbox 'ghost' is not running"):
        Sandbox("ghost", tmp_path).down()
    result = manage("--root", str(tmp_path), "down", "ghost")
    assert result.returncode == 1
    assert "CommandError: sandbox 'ghost' is not running" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_binaries_name_the_build_command(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"CORRAL_KUBE_BIN_DIR": str(empty)}
    result = manage("--root", str(tmp_path), "up", "nobin", env=env)
    assert result.returncode == 1
    assert "missing Kubernetes binaries" in result.stderr
    assert "make kube-tools" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "nobin").exists()


def test_missing_binaries_raise_missing_binaries(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_KUBE_BIN_DIR", str(tmp_path))
    kube_bin_dir.cache_clear()
    try:
        with pytest.raises(MissingBinaries, match="make kube-tools"):
            Sandbox("nobin", tmp_path / "root").up()
    finally:
        kube_bin_dir.cache_clear()


def test_invalid_name_is_rejected():
    with pytest.raises(SandboxError, match="invalid sandbox name"):
        Sandbox("../etc")


def test_cli_lifecycle_and_apiserver_restart(tmp_path):
    require_kube_binaries()
    root = str(tmp_path)

    up = manage("--root", root, "up", "cli", "--nodes", "2")
    assert up.returncode == 0, up.stderr
    assert "[100%]" in up.stdout
    try:
        listing = manage("--root", root, "list").stdout
        assert "cli" in listing and "running" in listing

        path = manage("--root", root, "kubeconfig", "cli").stdout.strip()
        assert Path(path) == tmp_path / "cli" / "kubeconfig"

        sandbox = Sandbox("cli", tmp_path)
        pids = {c: s["pid"] for c, s in sandbox.status()["components"].items()}
        assert all(pids.values())

        # A cluster that goes away and comes back, with its state intact.
        sandbox.stop_apiserver()
        with pytest.raises(OSError):
            sandbox.api().get("/readyz")
        sandbox.start_apiserver()
        assert len(sandbox.api().get("/api/v1/nodes")["items"]) == 2
    finally:
        down = manage("--root", root, "down", "cli")
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "cli").exists()
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert manage("--root", root, "list").stdout.strip() == "no sandboxes"


def test_concurrent_start_of_the_same_sandbox_is_refused(tmp_path):
    import fcntl

    with open(tmp_path / ".busy.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process in the middle of `up` or `down`
        with pytest.raises(SandboxError, match="being started or stopped by another process"):
            Sandbox("busy", tmp_path).up()


def test_a_recycled_pid_is_never_signalled(tmp_path):
    from clusters.sandbox import processes

    sleep = shutil.which("sleep")
    pid, started = processes.spawn([sleep, "60"], tmp_path / "sleep.log", tmp_path / "sleep.pid")
    try:
        assert processes.process_for(pid, sleep, started) is not None
        # Same pid and binary but another start time: some other process got the pid.
        assert processes.process_for(pid, sleep, started - 100) is None
        assert processes.stop(pid, sleep, started - 100) is False
        assert processes.process_for(pid, "/usr/sbin/etcd", started) is None
    finally:
        assert processes.stop(pid, sleep, started) is True
    assert processes.process_for(pid, sleep, started) is None
