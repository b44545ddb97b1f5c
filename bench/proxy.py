"""The Kubernetes API proxy's cost and capacity, against one sandbox, in one run.

    python bench/proxy.py [--gets 1000] [--lists 100] [--pods 1000] [--watches 500]

Overhead: GET of one pod ``--gets`` times and LIST of ``--pods`` pods ``--lists`` times, each
directly against the API server (the admin's client certificate) and through Corral (a project
member's kubeconfig token over Corral's HTTPS, impersonated), alternating so both see the same
machine; p50/p95 of each and of the difference (target: GET p95 added <= 10 ms).
Concurrency: ``--watches`` simultaneous watches of one namespace's ConfigMaps through one daphne
process while a ConfigMap is updated every 100 ms with its write time; the delay each watcher sees
(p50/p95/max; target p95 <= 1 s), how many watches are held, and the web process's memory.
Needs `make kube-tools`; uses a throwaway PostgreSQL database and a temporary sandbox.
"""

import argparse
import asyncio
import json
import ssl
import tempfile
import time
from pathlib import Path

import benchdb


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def ms(values):
    return f"p50 {percentile(values, 50) * 1000:.1f} ms, p95 {percentile(values, 95) * 1000:.1f} ms"


def setup_corral(sandbox, namespace):
    from django.contrib.auth.models import User

    from clusters import sync
    from clusters.models import Cluster, Namespace
    from portal.models import ApiToken
    from projects import reconciler
    from projects.models import Project, ProjectMembership

    cluster = Cluster.objects.create(
        name="bench", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    sync.sync(cluster.pk)
    project = Project.objects.create(cluster=cluster, name="bench")
    Namespace.objects.filter(cluster=cluster, name=namespace).update(project=project)
    user = User.objects.create_user("bench-dev")
    ProjectMembership.objects.create(project=project, user=user, role="project-member")
    reconciler.reconcile(cluster.pk)
    _, secret = ApiToken.issue(user, kind=ApiToken.Kind.KUBECONFIG)
    return cluster, secret


def start_daphne(tls_dir):
    import os
    import subprocess
    import sys
    import urllib.request

    from portal.tls import daphne_endpoint, ensure_local_tls
    from tests.live_server import free_port

    ca, cert, key = ensure_local_tls(tls_dir)
    port, tls_port = free_port(), free_port()
    env = {**os.environ, "PORTAL_DB_CONN_MAX_AGE": "60", "PORTAL_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-e", daphne_endpoint("127.0.0.1", tls_port, cert, key),
         "portal.asgi:application"], cwd=benchdb.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(Path(tls_dir) / "daphne.log", "w"),
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("daphne did not start") from None
            time.sleep(0.2)
    return proc, f"https://127.0.0.1:{tls_port}", str(ca)


async def overhead(sandbox, namespace, corral_url, corral_ca, secret, cluster_id, gets, lists):
    import aiohttp

    direct_ctx = ssl.create_default_context(cadata=sandbox.ca_pem)
    with tempfile.TemporaryDirectory() as d:
        Path(d, "c").write_text(sandbox.admin_cert_pem)
        Path(d, "k").write_text(sandbox.admin_key_pem)
        direct_ctx.load_cert_chain(Path(d, "c"), Path(d, "k"))
    corral_ctx = ssl.create_default_context(cafile=corral_ca)
    direct = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=direct_ctx, limit=1))
    proxied = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=corral_ctx, limit=1),
                                    headers={"Authorization": f"Bearer {secret}"})
    base_direct, base_proxied = sandbox.endpoint, f"{corral_url}/k8s/clusters/{cluster_id}"
    results = {}
    try:
        for label, path, count in (("GET one pod", f"/api/v1/namespaces/{namespace}/pods/bench-0", gets),
                                   ("LIST pods", f"/api/v1/namespaces/{namespace}/pods", lists)):
            times = {"direct": [], "proxied": []}
            for session, base in ((direct, base_direct), (proxied, base_proxied)):
                for _ in range(5):  # warm connections and caches
                    async with session.get(base + path) as r:
                        await r.read()
            for _ in range(count):
                for session, base, key in ((direct, base_direct, "direct"), (proxied, base_proxied, "proxied")):
                    started = time.perf_counter()
                    async with session.get(base + path) as r:
                        body = await r.read()
                        assert r.status == 200, (key, r.status, body[:200])
                    times[key].append(time.perf_counter() - started)
            added = [p - d for p, d in zip(times["proxied"], times["direct"])]
            results[label] = times
            print(f"{label} x{count}: direct {ms(times['direct'])}; through Corral {ms(times['proxied'])}; "
                  f"added p50 {(percentile(times['proxied'], 50) - percentile(times['direct'], 50)) * 1000:.1f} ms, "
                  f"p95 {(percentile(times['proxied'], 95) - percentile(times['direct'], 95)) * 1000:.1f} ms "
                  f"(pairwise: {ms(added)}); body {len(body) / 1024:.0f} KiB")
    finally:
        await direct.close()
        await proxied.close()
    return results


async def watches(sandbox, namespace, corral_url, corral_ca, secret, cluster_id, count, daphne_pid, seconds=20):
    import aiohttp
    import psutil

    process = psutil.Process(daphne_pid)
    rss_before = process.memory_info().rss
    ctx = ssl.create_default_context(cafile=corral_ca)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0),
                                    headers={"Authorization": f"Bearer {secret}"}, timeout=aiohttp.ClientTimeout(total=None))
    base = f"{corral_url}/k8s/clusters/{cluster_id}/api/v1/namespaces/{namespace}/configmaps"
    async with session.get(base) as r:
        version = json.loads(await r.read())["metadata"]["resourceVersion"]
    delays, held, stop = [], 0, asyncio.Event()

    async def watcher():
        nonlocal held
        url = f"{base}?watch=1&resourceVersion={version}&allowWatchBookmarks=false&timeoutSeconds=600"
        async with session.get(url) as r:
            assert r.status == 200, r.status
            held += 1
            async for line in r.content:
                event = json.loads(line)
                sent = (event["object"].get("data") or {}).get("sent")
                if sent:
                    delays.append(time.time() - float(sent))
                if stop.is_set():
                    return

    tasks = [asyncio.create_task(watcher()) for _ in range(count)]
    deadline = time.monotonic() + 120
    while held < count and time.monotonic() < deadline and not any(t.done() for t in tasks):
        await asyncio.sleep(0.2)
    failed = [t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception()]
    print(f"watches held through one daphne process: {held} of {count}" + (f"; {len(failed)} failed, e.g. {failed[0]!r}" if failed else ""))
    api = sandbox.api()
    peak = process.memory_info().rss
    updates = int(seconds / 0.1)
    for i in range(updates):
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tick", "namespace": namespace},
                "data": {"sent": repr(time.time()), "i": str(i)}}
        await asyncio.to_thread(api.request, "PUT", f"/api/v1/namespaces/{namespace}/configmaps/tick", body)
        peak = max(peak, process.memory_info().rss)
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await session.close()
    expected = updates * held
    print(f"events: {len(delays)} received of {expected} sent ({updates} updates x {held} watches); "
          f"delay p50 {percentile(delays, 50) * 1000:.0f} ms, p95 {percentile(delays, 95) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms")
    print(f"daphne memory: {rss_before / 2**20:.0f} MiB before the watches, peak {peak / 2**20:.0f} MiB while holding them "
          f"(+{(peak - rss_before) / 2**20:.0f} MiB, {(peak - rss_before) / max(held, 1) / 1024:.0f} KiB a watch)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--lists", type=int, default=100)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--watches", type=int, default=500)
    args = parser.parse_args()
    benchdb.setup("corral_bench_proxy")
    from clusters.sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="corral-bench-proxy-") as tmp:
        sandbox = Sandbox("bench-proxy", Path(tmp) / "sandboxes")
        sandbox.up(nodes=1)
        daphne = None
        try:
            namespace = "bench"
            api = sandbox.api()
            api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            api.create(f"/api/v1/namespaces/{namespace}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tick"}, "data": {}})
            # Pods nobody schedules (a scheduler that does not exist): a LIST of 1,000 real pods without 1,000 simulated ones.
            for i in range(args.pods):
                api.create(f"/api/v1/namespaces/{namespace}/pods", {
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bench-{i}", "labels": {"app": "bench"}},
                    "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "nginx:1.27"}]},
                })
            cluster, secret = setup_corral(sandbox, namespace)
            daphne, url, ca = start_daphne(Path(tmp) / "tls")
            print(f"sandbox {sandbox.endpoint}, Corral {url}, {args.pods} pods in {namespace}")
            asyncio.run(overhead(sandbox, namespace, url, ca, secret, cluster.pk, args.gets, args.lists))
            asyncio.run(watches(sandbox, namespace, url, ca, secret, cluster.pk, args.watches, daphne.pid))
        finally:
            if daphne is not None:
                daphne.terminate()
                daphne.wait(10)
            sandbox.down()


if __name__ == "__main__":
    main()
