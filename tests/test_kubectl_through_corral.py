"""kubectl, the real pinned binary, with a kubeconfig Corral hands out, through Corral's proxy on
the real ASGI server against a real sandbox: the seed's walk-through as a project member, the
cluster's own RBAC refusing another project's namespace, logs -f and exec through kwok, a revoked
token stopping a watch, and kubeconfigs listing only what each person may see."""

import json
import os
import select
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest
import yaml

from clusters import sync
from clusters.models import Cluster, ClusterMembership, Namespace
from portal.models import ApiToken, AuditEvent
from projects import reconciler
from projects.models import Project, ProjectMembership
from tests.conftest import make_user
from tests.live_server import daphne

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
STALLED = 4  # PORTAL_STALLED_CLIENT_SECONDS of the test server


@pytest.fixture
def corral(sandbox, kubectl, tmp_path):
    cluster = Cluster.objects.create(
        name=f"kc-{uuid.uuid4().hex[:6]}", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    other_ns = f"{kubectl.namespace}-other"[:63]
    sandbox.api().create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other_ns}})
    sync.sync(cluster.pk)
    web = Project.objects.create(cluster=cluster, name="web")
    api = Project.objects.create(cluster=cluster, name="api")
    Namespace.objects.filter(cluster=cluster, name=kubectl.namespace).update(project=web)
    Namespace.objects.filter(cluster=cluster, name=other_ns).update(project=api)
    dev = make_user(f"dev-{uuid.uuid4().hex[:4]}")
    ProjectMembership.objects.create(project=web, user=dev, role="project-member")
    reconciler.reconcile(cluster.pk)
    with daphne(tls_dir=tmp_path / "tls", PORTAL_PROXY_TOKEN_RECHECK_SECONDS="1", PORTAL_STALLED_CLIENT_SECONDS=str(STALLED)) as (url, proc):
        yield {"cluster": cluster, "dev": dev, "url": url, "tls_url": proc.tls_url, "other_ns": other_ns, "tmp": tmp_path, "server": proc}
    try:
        sandbox.api().request("DELETE", f"/api/v1/namespaces/{other_ns}")
    except Exception:  # noqa: BLE001 - the sandbox may be gone already
        pass


def fetch_kubeconfig(url, user, path="/api/v1/kubeconfig/"):
    secret = ApiToken.issue(user)[1]
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class Kubectl:
    def __init__(self, sandbox, config, tmp, namespace):
        self.path = tmp / f"kubeconfig-{uuid.uuid4().hex[:6]}"
        self.path.write_text(yaml.safe_dump(config))
        self.binary, self.namespace = str(sandbox.bin_dir / "kubectl"), namespace

    def argv(self, *args):
        return [self.binary, f"--kubeconfig={self.path}", f"--namespace={self.namespace}", *map(str, args)]

    def run(self, *args, timeout=60):
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, check=False)

    def __call__(self, *args, timeout=60):
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, f"kubectl {' '.join(map(str, args))}: {result.stderr}"
        return result.stdout

    def popen(self, *args):
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def lines_until(proc, wanted, timeout=60):
    """Lines ``proc`` prints until ``wanted(line)``; fails after ``timeout``.  Reads the pipe's
    bytes directly: a buffered readline would hide lines already read from ``select``."""
    seen, deadline = [], time.monotonic() + timeout
    pending = getattr(proc, "pending", b"")
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            seen.append(line.decode())
            if wanted(seen[-1]):
                proc.pending = pending
                return seen
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            data = os.read(fd, 65536)
            if not data:
                break
            pending += data
    proc.pending = pending
    raise AssertionError(f"never saw it; got {seen!r}, stderr {proc.stderr.read() if proc.poll() is not None else ''}")


def running_pods(kc, selector, count, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = json.loads(kc("get", "pods", "-l", selector, "-o", "json"))["items"]
        live = [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        if len(live) == count and len(pods) == count:
            return sorted(p["metadata"]["name"] for p in live)
        time.sleep(0.5)
    raise AssertionError(f"never saw {count} Running pods")


def test_walkthrough_with_kubectl_as_a_project_member(sandbox, kubectl, corral):
    kc = Kubectl(sandbox, fetch_kubeconfig(corral["url"], corral["dev"], f"/api/v1/clusters/{corral['cluster'].pk}/kubeconfig/"), corral["tmp"], kubectl.namespace)
    assert "yes" in kc("auth", "can-i", "create", "deployments")
    kc("create", "deployment", "nginx", "--image=nginx:1.27")
    running_pods(kc, "app=nginx", 1)
    kc("scale", "deployment", "nginx", "--replicas=3")
    before = running_pods(kc, "app=nginx", 3)

    watch = kc.popen("get", "pods", "-l", "app=nginx", "-w", "--no-headers")
    try:
        lines_until(watch, lambda line: before[-1] in line)  # the watch is streaming
        kc("delete", "pod", before[0], "--wait=false")
        new = lines_until(watch, lambda line: line.split()[0] not in before and "Running" in line)
        replacement = new[-1].split()[0]
    finally:
        watch.terminate()
        watch.wait(10)
    assert replacement.startswith("nginx-") and replacement not in before

    kc("expose", "deployment", "nginx", "--port=80")
    applied = subprocess.run(kc.argv("apply", "--server-side", "-f", "-"), input=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "server-side"}}),
        capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0 and "serverside-applied" in applied.stdout, applied.stderr
    assert kc("get", "service", "nginx", "-o", "jsonpath={.spec.ports[0].port}") == "80"

    refused = kc.run("get", "pods", "-n", corral["other_ns"])
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr and f'"corral:user:{corral["dev"].username}"' in refused.stderr
    refused = kc.run("create", "deployment", "intruder", "--image=nginx", "-n", corral["other_ns"])
    assert refused.returncode != 0 and "forbidden" in refused.stderr

    expected = {("create", "kubernetes.deployments.apps", 201), ("update", "kubernetes.deployments/scale.apps", 200),
                ("delete", "kubernetes.pods", 200), ("create", "kubernetes.services", 201),
                ("create", "kubernetes.deployments.apps", 403)}  # refused writes are recorded too
    assert expected <= audited_eventually(corral["dev"], expected)


def audited_eventually(user, expected, timeout=10):
    """The proxy writes the audit record just after answering: wait for it briefly."""
    deadline = time.monotonic() + timeout
    while True:
        audited = set(AuditEvent.objects.filter(source="kube-proxy", username=user.username).values_list("action", "object_type", "after__code"))
        if expected <= audited or time.monotonic() > deadline:
            return audited
        time.sleep(0.2)


def test_logs_follow_and_exec_through_kwok(sandbox, kubectl, corral):
    kc = Kubectl(sandbox, fetch_kubeconfig(corral["url"], corral["dev"]), corral["tmp"], kubectl.namespace)
    kc("run", "shell", "--image=busybox", "--restart=Never")
    running_pods(kc, "run=shell", 1)
    assert "simulated container log" in kc("logs", "shell")

    follow = kc.popen("logs", "-f", "shell")
    try:
        lines_until(follow, lambda line: "simulated container log" in line)
        marker = f"followed-{uuid.uuid4().hex[:6]}"
        sandbox.append_pod_log(marker)
        lines_until(follow, lambda line: marker in line)
    finally:
        follow.terminate()
        follow.wait(10)

    assert kc("exec", "shell", "--", "echo", "hi", timeout=60).strip() == "hi"
    attach = kc.popen("attach", "shell")
    try:
        time.sleep(2)
        marker = f"attached-{uuid.uuid4().hex[:6]}"
        sandbox.append_pod_log(marker)
        lines_until(attach, lambda line: marker in line, timeout=30)
    finally:
        attach.terminate()
        attach.wait(10)
    assert ("create", "kubernetes.pods/exec", 101) in audited_eventually(corral["dev"], {("create", "kubernetes.pods/exec", 101)})


def test_a_revoked_token_stops_a_watch_and_every_call(sandbox, kubectl, corral):
    config = fetch_kubeconfig(corral["url"], corral["dev"])
    kc = Kubectl(sandbox, config, corral["tmp"], kubectl.namespace)
    kc("get", "pods")
    watch = kc.popen("get", "pods", "-w")
    time.sleep(1)
    assert watch.poll() is None  # streaming
    key_id = config["users"][0]["user"]["token"].split(".")[0].removeprefix("crl_")
    token = ApiToken.objects.get(key_id=key_id)
    assert token.kind == "kubeconfig"
    response = corral_api(corral["url"], corral["dev"], f"/api/v1/tokens/{token.pk}/", method="DELETE")
    assert response == 204
    watch.wait(30)  # closed by Corral within PORTAL_PROXY_TOKEN_RECHECK_SECONDS (1 s here)
    refused = kc.run("get", "pods")
    assert refused.returncode != 0 and "You must be logged in" in refused.stderr


def corral_api(url, user, path, method="GET"):
    secret = ApiToken.issue(user)[1]
    request = urllib.request.Request(url + path, method=method, headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def test_admins_kubeconfig_lists_every_cluster_and_a_members_only_theirs(sandbox, kubectl, corral):
    admin = make_user(f"admin-{uuid.uuid4().hex[:4]}", is_superuser=True, is_staff=True)
    elsewhere = Cluster.objects.create(name=f"elsewhere-{uuid.uuid4().hex[:4]}", driver="imported", state="active")
    owner = make_user(f"owner-{uuid.uuid4().hex[:4]}")
    ClusterMembership.objects.create(cluster=elsewhere, user=owner, role="cluster-owner")
    every = {c.slug for c in Cluster.objects.all()}
    assert {c["name"] for c in fetch_kubeconfig(corral["url"], admin)["clusters"]} == every
    mine = fetch_kubeconfig(corral["url"], corral["dev"])
    assert [c["name"] for c in mine["clusters"]] == [corral["cluster"].slug]
    assert mine["clusters"][0]["cluster"]["server"] == f"{corral['tls_url']}/k8s/clusters/{corral['cluster'].pk}"
    assert mine["clusters"][0]["cluster"]["certificate-authority-data"]
    assert [c["name"] for c in fetch_kubeconfig(corral["url"], owner)["clusters"]] == [elsewhere.slug]
    # The admin's kubeconfig works with kubectl on the sandbox's context.
    kc = Kubectl(sandbox, fetch_kubeconfig(corral["url"], admin), corral["tmp"], kubectl.namespace)
    assert "kube-system" in kc("--context", corral["cluster"].slug, "get", "namespaces", "-o", "name")
    assert os.path.exists(kc.path)


def test_port_forward_and_top_pass_through(sandbox, kubectl, corral):
    import socket
    import threading

    kc = Kubectl(sandbox, fetch_kubeconfig(corral["url"], corral["dev"]), corral["tmp"], kubectl.namespace)
    kc("run", "web", "--image=nginx", "--restart=Never", "--port=80")
    running_pods(kc, "run=web", 1)
    # What listens where kwok forwards every pod port: an echo server.
    listener = sandbox.listen_for_port_forwards()

    def echo():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(100)
                conn.sendall(b"echo:" + data)

    threading.Thread(target=echo, daemon=True).start()
    forward = kc.popen("port-forward", "pod/web", ":80")
    try:
        [line] = lines_until(forward, lambda line: "Forwarding from 127.0.0.1:" in line)[-1:]
        local = int(line.split("127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", local), timeout=20) as conn:
            conn.sendall(b"ping")
            assert conn.recv(100) == b"echo:ping"
    finally:
        forward.terminate()
        forward.wait(10)
        listener.shutdown(socket.SHUT_RDWR)  # wakes the echo thread's accept: the port is free again
        listener.close()

    # `top` reads the metrics API (metrics-server, when built, serves it in a sandbox; its first
    # figures for a new pod take a scrape or two): through Corral the answer is the cluster's own.
    deadline = time.monotonic() + 120
    while True:
        direct = kubectl.run("top", "pod", "web", "--no-headers")
        if direct.returncode == 0 or "Metrics API not available" in direct.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    through = kc.run("top", "pod", "web", "--no-headers")
    assert through.returncode == direct.returncode, (through.stderr, direct.stderr)
    if direct.returncode == 0:
        assert through.stdout.split()[0] == direct.stdout.split()[0] == "web"
    else:
        assert through.stderr == direct.stderr


def test_dropped_watch_clients_leave_no_connection_to_the_cluster(sandbox, kubectl, corral):
    """Clients that open watches and vanish (killed kubectl, dropped network) free the proxy's
    connections to the API server; nothing stays pinned."""
    import psutil

    config = fetch_kubeconfig(corral["url"], corral["dev"])
    kc = Kubectl(sandbox, config, corral["tmp"], kubectl.namespace)
    server = psutil.Process(corral["server"].pid)
    api_port = int(sandbox.endpoint.rsplit(":", 1)[1])

    def upstream_connections():
        return sum(1 for c in server.net_connections(kind="tcp") if c.raddr and c.raddr.port == api_port and c.status == "ESTABLISHED")

    kc("get", "pods")  # one kept-alive connection may stay in the pool: the baseline
    baseline = upstream_connections()
    watchers = [kc.popen("get", "pods", "-w") for _ in range(10)]
    deadline = time.monotonic() + 30
    while upstream_connections() < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert upstream_connections() >= 10, "the watches never opened"  # a watch may reuse the pooled one
    for proc in watchers:
        proc.kill()  # gone without a goodbye
        proc.wait()
    deadline = time.monotonic() + 30
    while upstream_connections() > baseline and time.monotonic() < deadline:
        time.sleep(0.2)
    assert upstream_connections() <= baseline


def _upgrade(url, path, secret):
    """(status, body) of a raw SPDY upgrade request through Corral."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\nConnection: Upgrade\r\n"
                     f"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
        head, body = answer.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += sock.recv(4096)
    return int(head.split()[1]), json.loads(body)


def test_exec_and_port_forward_over_spdy(sandbox, kubectl, corral):
    """kubectl told not to use websockets (as older versions, or its fallback) speaks SPDY: exec and
    port-forward (bytes both ways) work through Corral all the same, under the cluster's RBAC.
    Not here: `exec -i` with stdin, which lost its output in 2 of 10 runs through Corral over SPDY
    (0 of 10 straight, 0 of 10 over websockets); cause not found yet (README, Not yet)."""
    kc = Kubectl(sandbox, fetch_kubeconfig(corral["url"], corral["dev"]), corral["tmp"], kubectl.namespace)
    spdy = {**os.environ, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}
    kc("run", "shell", "--image=busybox", "--restart=Never", "--port=80")
    running_pods(kc, "run=shell", 1)

    said = subprocess.run(kc.argv("exec", "shell", "--", "echo", "hi"), capture_output=True, text=True, timeout=60, env=spdy)
    assert (said.returncode, said.stdout.strip()) == (0, "hi"), said.stderr
    served = open(corral["server"].log_path).read()
    assert "SPDY upgrade" in served, f"kubectl did not speak SPDY: {served[-3000:]}"

    listener = sandbox.listen_for_port_forwards()
    listener.settimeout(20)
    forward = subprocess.Popen(kc.argv("port-forward", "pod/shell", ":80"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=spdy)
    try:
        [line] = lines_until(forward, lambda line: "Forwarding from 127.0.0.1:" in line)[-1:]
        local = int(line.split("127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", local), timeout=20) as conn:
            conn.sendall(b"ping")
            served, _ = listener.accept()
            with served:
                assert served.recv(100) == b"ping"
                served.sendall(b"pong")
            assert conn.recv(100) == b"pong"
    finally:
        forward.terminate()
        forward.wait(10)
        listener.close()

    # The cluster's RBAC answers for another project's namespace; a cluster one may not see is
    # Corral's 404 before anything is sent.
    secret = ApiToken.issue(corral["dev"])[1]
    cluster = corral["cluster"].pk
    code, status = _upgrade(corral["url"], f"/k8s/clusters/{cluster}/api/v1/namespaces/{corral['other_ns']}/pods/x/exec?command=echo&stdout=true", secret)
    assert (code, status["reason"]) == (403, "Forbidden"), status
    outsider = ApiToken.issue(make_user(f"out-{uuid.uuid4().hex[:4]}"))[1]
    code, status = _upgrade(corral["url"], f"/k8s/clusters/{cluster}/api/v1/namespaces/{kubectl.namespace}/pods/shell/exec?command=echo&stdout=true", outsider)
    assert code == 404, status
    assert ("create", "kubernetes.pods/portforward", 101) in audited_eventually(corral["dev"], {("create", "kubernetes.pods/portforward", 101)})


def test_a_client_that_stops_reading_is_held_back_then_disconnected(sandbox, kubectl, corral):
    """A watch whose client stops reading while the cluster goes on sending (~22 MB of events):
    the web process does not buffer it (the relay waits for the client's connection to drain, so
    the API server's own TCP flow control holds the rest), and after PORTAL_STALLED_CLIENT_SECONDS
    the client is disconnected and the connection to the cluster closed."""
    import psutil

    server = psutil.Process(corral["server"].pid)
    api_port = int(sandbox.endpoint.rsplit(":", 1)[1])

    def upstream_connections():
        return sum(1 for c in server.net_connections(kind="tcp") if c.raddr and c.raddr.port == api_port and c.status == "ESTABLISHED")

    path = f"/api/v1/namespaces/{kubectl.namespace}/configmaps"
    api = sandbox.api()
    api.request("POST", path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"d": "0" * 900_000}})
    secret = ApiToken.issue(corral["dev"])[1]
    port = int(corral["url"].rsplit(":", 1)[1])
    time.sleep(1)
    baseline, memory_before = upstream_connections(), server.memory_info().rss

    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that takes (almost) nothing
    client.connect(("127.0.0.1", port))
    client.sendall(f"GET /k8s/clusters/{corral['cluster'].pk}{path}?watch=1 HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {secret}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += client.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    memory_peak = memory_before
    for i in range(1, 26):  # the client reads no more from here on
        api.request("PUT", f"{path}/big", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"d": str(i % 10) * 900_000}})
        memory_peak = max(memory_peak, server.memory_info().rss)
        if i == 3:
            assert upstream_connections() == baseline + 1, "the watch is not open to the cluster"
    for _ in range(10):
        memory_peak = max(memory_peak, server.memory_info().rss)
        time.sleep(0.2)
    grown = (memory_peak - memory_before) / 2**20
    print(f"web process memory grew {grown:.1f} MiB while ~22 MiB of events waited for a stalled client")
    assert grown < 10, f"the web process buffered {grown:.1f} MiB for a client that reads nothing"

    deadline = time.monotonic() + STALLED + 20
    while upstream_connections() > baseline and time.monotonic() < deadline:
        time.sleep(0.2)
    assert upstream_connections() <= baseline, "the stalled client's watch still holds a connection to the cluster"
    # Disconnected by the server, not ended politely: a reset drops what the client had not read.
    with pytest.raises(ConnectionResetError):
        while client.recv(65536):
            pass
    client.close()
    code = urllib.request.urlopen(corral["url"] + "/healthz", timeout=10).status
    assert code == 200


def test_an_exec_whose_client_stops_reading_is_held_back_then_disconnected(sandbox, kubectl, corral):
    """The same over the websocket kubectl and the browser shell use for exec: a command that
    prints without end (`yes`) to a client that reads nothing after the handshake."""
    import base64

    import psutil

    kc = Kubectl(sandbox, fetch_kubeconfig(corral["url"], corral["dev"]), corral["tmp"], kubectl.namespace)
    kc("run", "shell", "--image=busybox", "--restart=Never")
    running_pods(kc, "run=shell", 1)
    server = psutil.Process(corral["server"].pid)
    api_port = int(sandbox.endpoint.rsplit(":", 1)[1])

    def upstream_connections():
        return sum(1 for c in server.net_connections(kind="tcp") if c.raddr and c.raddr.port == api_port and c.status == "ESTABLISHED")

    marker = f"corral-slow-{uuid.uuid4().hex[:6]}"
    secret = ApiToken.issue(corral["dev"])[1]
    time.sleep(1)
    baseline, memory_before = upstream_connections(), server.memory_info().rss
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", int(corral["url"].rsplit(":", 1)[1])))
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        client.sendall(f"GET /k8s/clusters/{corral['cluster'].pk}/api/v1/namespaces/{kubectl.namespace}/pods/shell/exec?command=yes&command={marker}"
                       f"&stdout=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                       f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        memory_peak, deadline = memory_before, time.monotonic() + 3
        while time.monotonic() < deadline:  # `yes` writes as fast as it is let
            memory_peak = max(memory_peak, server.memory_info().rss)
            time.sleep(0.1)
        grown = (memory_peak - memory_before) / 2**20
        print(f"web process memory grew {grown:.1f} MiB while `yes` wrote to a stalled exec client")
        assert grown < 10, f"the web process buffered {grown:.1f} MiB for an exec client that reads nothing"
        deadline = time.monotonic() + STALLED + 20
        while upstream_connections() > baseline and time.monotonic() < deadline:
            time.sleep(0.2)
        assert upstream_connections() <= baseline, "the stalled exec still holds a connection to the cluster"
        with pytest.raises(ConnectionResetError):
            while client.recv(65536):
                pass
    finally:
        client.close()
        for process in psutil.process_iter(["cmdline"]):  # kwok runs the command on this host
            if process.info["cmdline"] == ["yes", marker]:
                process.kill()


def test_large_answers_arrive_whole(sandbox, kubectl, corral):
    """Answers larger than what the proxy reads at once (the OpenAPI document, megabytes) are relayed
    in pieces and arrive byte for byte as the API server sent them."""
    kc = Kubectl(sandbox, fetch_kubeconfig(corral["url"], corral["dev"]), corral["tmp"], kubectl.namespace)
    through, direct = kc("get", "--raw", "/openapi/v2"), kubectl("get", "--raw", "/openapi/v2")
    assert len(direct) > 1024 * 1024
    assert json.loads(through) == json.loads(direct)
