"""Sandboxes are real clusters: upstream controllers, scheduler, admission and RBAC all answer."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
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
    pid, ticks = processes.spawn([sleep, "60"], tmp_path / "sleep.log", tmp_path / "sleep.pid")
    try:
        assert processes.process_for(pid, sleep, ticks) is not None
        # Same pid and binary but another start time: some other process got the pid.
        assert processes.process_for(pid, sleep, ticks - 100) is None
        assert processes.stop(pid, sleep, ticks - 100) is False
        assert processes.process_for(pid, "/usr/sbin/etcd", ticks) is None
    finally:
        assert processes.stop(pid, sleep, ticks) is True
    assert processes.process_for(pid, sleep, ticks) is None
    assert processes.exit_reason(pid) == "killed by SIGTERM"


def test_a_stepped_wall_clock_does_not_disown_a_running_process(tmp_path, monkeypatch):
    """The identity is the kernel's start time in ticks since boot. psutil's create_time() adds the
    wall-clock boot time, which moves by whole seconds when the clock is stepped (NTP, a VM restored
    from a snapshot); we cannot step this machine's clock, so psutil's boot time is moved instead."""
    import psutil._pslinux

    from clusters.sandbox import processes

    sleep = shutil.which("sleep")
    pid, ticks = processes.spawn([sleep, "60"], tmp_path / "sleep.log", tmp_path / "sleep.pid")
    try:
        boot_time = psutil._pslinux.boot_time
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: boot_time() - 1)
        assert processes.process_for(pid, sleep, ticks) is not None
    finally:
        monkeypatch.undo()
        assert processes.stop(pid, sleep, ticks) is True


def test_a_component_just_started_is_never_taken_for_exited(tmp_path):
    """Popen returns when exec() closes its close-on-exec pipe, before the kernel has loaded the new
    program; until then /proc/<pid>/cmdline reads empty. Under load a third of etcd starts were
    caught in that window and reported as "etcd of sandbox ... exited during start-up" with a clean
    log (issue 10). spawn() now returns only once the program runs."""
    require_kube_binaries()
    from clusters.sandbox import processes
    from clusters.sandbox.ports import free_ports

    etcd = str(kube_bin_dir() / "etcd")
    for attempt in range(12):
        client, peer = (f"http://127.0.0.1:{port}" for port in free_ports(2))
        data = tmp_path / f"etcd-{attempt}"
        argv = [
            etcd, "--name=s", f"--data-dir={data}", f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}", f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=s={peer}", "--log-level=warn",
        ]
        pid, ticks = processes.spawn(argv, data / "etcd.log", data / "etcd.pid")
        try:
            assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == etcd.encode()
            assert processes.process_for(pid, etcd, ticks) is not None
        finally:
            processes.stop(pid, etcd, ticks)


def test_a_port_taken_between_choice_and_bind_is_retried_with_fresh_ports(tmp_path, monkeypatch):
    require_kube_binaries()
    from clusters.sandbox import sandbox as module

    choose, thieves = module.free_ports, []

    def chosen_then_taken(count, avoid=None):
        ports = choose(count, avoid)
        if not thieves:  # another program binds etcd's client port right after it was chosen
            thief = socket.socket()
            thief.bind(("127.0.0.1", ports[0]))
            thief.listen()
            thieves.append(thief)
        return ports

    monkeypatch.setattr(module, "free_ports", chosen_then_taken)
    sandbox, messages = Sandbox("clash", tmp_path), []
    try:
        sandbox.up(nodes=1, progress=lambda percent, message: messages.append(message))
        taken = thieves[0].getsockname()[1]
        assert f"port {taken} was taken by another program meanwhile; retrying with other ports" in messages
        assert "address already in use" in (sandbox.dir / "logs-attempt-1" / "etcd.log").read_text()
        assert sandbox.status()["healthy"] and sandbox.port != taken
    finally:
        thieves[0].close()
        if sandbox.is_running():
            sandbox.down()


def test_the_port_forward_port_is_held_from_start_to_stop_for_its_listener_alone():
    """The session's sandbox chooses where pod port-forwards land at start; a test listens there half
    an hour later. Found free is not enough: another sandbox's components took it meanwhile (CI of
    stop 21). The reservation keeps every other bind off the port and lets its listener in."""
    from clusters.sandbox.ports import free_ports, port_in_use, reserve_port

    held = reserve_port()
    port = held.getsockname()[1]
    try:
        assert port_in_use(port)  # so no sandbox chooses it
        assert port not in free_ports(50)
        go_like = socket.socket()
        go_like.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with go_like, pytest.raises(OSError):
            go_like.bind(("127.0.0.1", port))
        with socket.create_server(("127.0.0.1", port), reuse_port=True) as listener:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                accepted, _ = listener.accept()
                with accepted:
                    conn.sendall(b"x")
                    assert accepted.recv(1) == b"x"
    finally:
        held.close()
    assert not port_in_use(port)


def test_long_names_are_cut_to_a_valid_sandbox_name_or_refused_up_front():
    from clusters.sandbox import sandbox_name

    slug = "a-very-long-cluster-name-that-uses-every-character-a-slug-may-hold"[:63]
    name = sandbox_name(f"cluster-{slug}")
    assert len(name) == 63 and Sandbox(name).name == name
    assert name == sandbox_name(f"cluster-{slug}")  # stable: teardown finds what provisioning started
    assert sandbox_name(f"cluster-{slug[:-1]}b") != name
    assert sandbox_name("cluster-web") == "cluster-web"
    with pytest.raises(SandboxError, match="at most 63 characters"):
        Sandbox("x" * 64)


def test_the_driver_tears_down_a_cluster_with_the_longest_slug(tmp_path, settings):
    from types import SimpleNamespace

    from clusters.drivers import SandboxDriver

    settings.SANDBOX_ROOT = tmp_path
    cluster, steps = SimpleNamespace(slug="s" * 63), []  # only the slug is read; no database needed
    SandboxDriver().teardown(cluster, lambda percent, message: steps.append(message))
    assert steps == ["the sandbox was not running"]


def test_sandboxes_start_dependably_side_by_side_under_cpu_load(tmp_path):
    """Issue 10: `sandbox up` failed about 3 times in 10 beside a running portal. Six starts, three
    at a time, while two busy loops keep both cores saturated; every one must come up and go down.
    The names are the longest allowed. `bench/sandbox_starts.py` runs heavier variants."""
    require_kube_binaries()
    from clusters.sandbox import processes

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]

    def start_and_stop(index):
        sandbox = Sandbox(f"start-{index}-".ljust(62, "x") + "z", tmp_path)
        try:
            sandbox.up(nodes=1)
            started = sandbox._state()["components"].values()
            sandbox.down()
        except SandboxError as exc:
            return f"start {index}: {exc}"
        left = [c["pid"] for c in started if processes.process_for(c["pid"], c["argv"][0], c["start_ticks"])]
        return f"start {index}: processes {left} still running after down" if left else None

    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            failures = [failure for failure in pool.map(start_and_stop, range(6)) if failure]
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert not failures, "\n".join(failures)


def test_orphan_cleanup_knows_a_dead_run_even_when_its_pid_was_recycled(sandbox):
    from clusters.sandbox import processes
    from tests.kube_fixtures import _owner_alive

    me, ticks = os.getpid(), processes.start_ticks(os.getpid())
    assert sandbox.name == f"pytest-{me}-{ticks}" and _owner_alive(sandbox.name)
    assert not _owner_alive(f"pytest-{me}-{ticks - 1}")  # same pid, another (dead) run
    assert _owner_alive(f"pytest-{me}")  # an older run's name: the pid is all there is
    assert _owner_alive("dev")  # not a test sandbox: never touched
