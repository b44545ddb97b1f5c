"""The watcher's transport against a real sandbox: a cluster's ten watches are streams of one
HTTP/2 connection, the outbound policy refuses the connection on the socket, and an API server
reached over plain HTTP/1.1 (``kubectl proxy``, which speaks no HTTP/2 there) gets a connection per
watch and still works."""

import asyncio
import re
import subprocess

import psutil
import pytest

from clusters import sync
from clusters.kube.inventory import RESOURCES
from clusters.kube.outbound import ConnectionNotAllowed
from clusters.models import Cluster, ClusterWatchState, Namespace
from clusters.proxy.upstream import GuardedBackend
from clusters.watcher import WATCHED, ClusterWatch, runtime
from tests.waiting import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]


def _cluster(sandbox, server=None, versions=None, **overrides):
    credentials = {"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem,
                   "client_key": sandbox.admin_key_pem} if server is None else {"server": server}
    cluster = Cluster.objects.create(name=f"t-{len(Cluster.objects.all())}", driver="imported", state="active",
                                     api_endpoint=credentials["server"], credentials=credentials)
    if versions is not None:  # where the watches were left: resumed, not relisted
        ClusterWatchState.objects.create(cluster=cluster, server=credentials["server"], versions=versions | overrides)
    return cluster


def _current_versions(sandbox):
    return {resource: sandbox.api().get(RESOURCES[resource] + "?limit=1")["metadata"]["resourceVersion"] for resource in WATCHED}


def _connections_to(port):
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED"]


def _port(endpoint):
    return int(endpoint.rsplit(":", 1)[1].split("/")[0])


def _namespace_arrives(sandbox, cluster, name):
    sandbox.api().create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        wait_for(lambda: Namespace.objects.filter(cluster=cluster, name=name).exists(), 15, f"namespace {name} in Corral")
    finally:
        sandbox.api().request("DELETE", f"/api/v1/namespaces/{name}")


def test_a_clusters_ten_watches_share_one_http2_connection(sandbox, monkeypatch):
    relists = []
    monkeypatch.setattr(sync, "sync", lambda *a, **k: relists.append(1))
    cluster = _cluster(sandbox, versions=_current_versions(sandbox))
    before = len(_connections_to(_port(sandbox.endpoint)))
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    try:
        wait_for(lambda: watch.h2 is not None and len(watch.h2.responses) == len(WATCHED), 20, "ten watch streams")
        assert watch.http1 is None
        assert watch.h2.alpn == "h2"
        assert len(_connections_to(_port(sandbox.endpoint))) - before == 1  # one socket for the ten watches
        _namespace_arrives(sandbox, cluster, f"h2-{cluster.pk}")
        assert relists == []  # resumed where it was left
    finally:
        watch.stop(wait=10)
    assert watch.h2.closed is not None
    wait_for(lambda: len(_connections_to(_port(sandbox.endpoint))) == before, 10, "the connection closed with the watches")


def test_the_outbound_policy_refuses_the_watch_connection(sandbox, settings):
    settings.CLUSTER_DENIED_NETWORKS = [*settings.CLUSTER_DENIED_NETWORKS, "127.0.0.0/8"]
    cluster = _cluster(sandbox, versions=_current_versions(sandbox))
    watch = ClusterWatch(cluster.pk, None)

    async def attempt():
        watch._use(cluster.credentials)
        watch.connecting = asyncio.Lock()
        await watch._watch_once("pods")

    with pytest.raises(ConnectionNotAllowed, match=r"connecting to 127\.0\.0\.1 is not allowed: it is in 127\.0\.0\.0/8"):
        runtime().run(attempt()).result(30)
    assert watch.h2 is None

    # A host name is resolved by the backend and each address checked before connecting.
    with pytest.raises(ConnectionNotAllowed, match=r"connecting to localhost \(127\.0\.0\.1\) is not allowed"):
        runtime().run(GuardedBackend().connect_tcp("localhost", _port(sandbox.endpoint), timeout=10)).result(30)
    with pytest.raises(ConnectionNotAllowed, match=r"connecting to localhost \(127\.0\.0\.1\) is not allowed"):
        runtime().run(GuardedBackend().connect_socket("localhost", _port(sandbox.endpoint), timeout=10)).result(30)


def test_a_silent_stream_closes_its_connection_after_the_read_timeout_and_a_busy_one_does_not(sandbox):
    """A watch stream that says nothing for the read timeout (no bookmark, no change: a dead
    connection, since the API server sends bookmarks and ends each watch in time) closes the
    connection, so every stream on it starts again on a new one; a stream that keeps talking is
    not cut however long it lasts."""
    import time

    from clusters import h2client
    from clusters.proxy.upstream import ssl_context

    credentials = {"ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem}
    headers = [(b"accept", b"application/json")]
    version = sandbox.api().get("/api/v1/namespaces/default/configmaps?limit=1")["metadata"]["resourceVersion"]

    async def chunks_until_timeout(path, read_timeout, limit):
        connection = h2client.Connection(sandbox.endpoint, ssl_context(credentials), GuardedBackend(), 10)
        await connection.open()
        response = await connection.get(path, headers, timeout=10)
        assert response.status == 200
        started, got = time.monotonic(), 0
        try:
            async for _ in response.iter_chunks(read_timeout):
                got += 1
                if time.monotonic() - started > limit:
                    return got, None, connection.closed
        except TimeoutError:
            return got, time.monotonic() - started, connection.closed
        finally:
            await connection.close()

    # Configmaps in a namespace nobody touches, without bookmarks: silence.
    quiet = f"/api/v1/namespaces/kube-node-lease/configmaps?watch=1&timeoutSeconds=60&resourceVersion={version}"
    got, after, closed = runtime().run(chunks_until_timeout(quiet, 1.5, 30)).result(60)
    assert got == 0 and 1.5 <= after < 10 and closed == "no data within the read timeout"
    # The node leases, renewed every few seconds by kwok: a stream that talks more often than its
    # read timeout runs to the limit without being cut.
    busy = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases?watch=1&timeoutSeconds=60"
    got, after, closed = runtime().run(chunks_until_timeout(busy, 20, 6)).result(60)
    assert got > 0 and after is None and closed is None


@pytest.fixture
def kubectl_proxy(sandbox):
    """``kubectl proxy``: the sandbox's API over plain HTTP/1.1 on a local port."""
    process = subprocess.Popen([str(sandbox.bin_dir / "kubectl"), f"--kubeconfig={sandbox.kubeconfig_path}", "proxy", "--port=0",
                                "--address=127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert found, f"kubectl proxy did not start: {line}"
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        process.terminate()
        process.wait(10)


def test_an_api_server_without_http2_gets_a_connection_per_watch(sandbox, kubectl_proxy, monkeypatch):
    relists = []
    monkeypatch.setattr(sync, "sync", lambda *a, **k: relists.append(1))
    cluster = _cluster(sandbox, server=kubectl_proxy, versions=_current_versions(sandbox))
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    try:
        wait_for(lambda: len(_connections_to(_port(kubectl_proxy))) == len(WATCHED), 20, "a connection per watch")
        assert watch.h2 is None and watch.http1 is not None
        _namespace_arrives(sandbox, cluster, f"h1-{cluster.pk}")
        assert relists == []
    finally:
        watch.stop(wait=10)
