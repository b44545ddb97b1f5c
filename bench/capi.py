"""Many clusters at once through Corral's capi driver, on the real Cluster API controllers
(`sandbox up --capi`, CAPI's in-memory provider simulating the machines; docs/capi.md):

- N clusters (1 control plane + W workers each) created at once with `POST /api/v1/clusters/`
  (concurrent HTTP requests to the real web process), then the time until all are active in
  Corral with their nodes synced (provisioning succeeded, 1 + W nodes in the inventory);
- Corral's CPU meanwhile: the web (daphne), Celery worker (with its pool's children) and cluster
  watcher processes, as `make run` runs them, with a real Redis broker; and its database queries
  per cluster (pg_stat_statements on a bench-private PostgreSQL, utility statements not counted,
  the bench's own few queries taken out);
- the delay from a CAPI condition turning True (its lastTransitionTime, in whole seconds, read at
  the end) to the cluster page's websocket (one per cluster page, real sockets to the web process)
  receiving the operation's line about it: p50 / p95.

    .venv/bin/python bench/capi.py                          # 20 clusters x 3 workers
    .venv/bin/python bench/capi.py --clusters 5 --workers 1

The worker runs `--pool threads --concurrency N` (one slot per cluster: a provisioning holds its
task for the whole provisioning; `--concurrency 2`, as `make run`, provisions two at a time).
Needs `make kube-tools`; everything it starts (sandbox, PostgreSQL, Redis under var/capi-bench,
Corral's processes) is stopped at the end.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
PYTHON = sys.executable
API = "/apis/cluster.x-k8s.io/v1beta2"
CONDITIONS = ("InfrastructureReady", "ControlPlaneInitialized", "ControlPlaneAvailable", "WorkersAvailable")


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def private_postgres(var):
    """A PostgreSQL of the bench's own with pg_stat_statements preloaded (a restart is needed for
    that; the tests' server is left alone)."""
    from tools import services

    url = services.ensure_postgres(var)
    data = services.postgres_home(var) / "data"
    conf = data / "postgresql.conf"
    if "pg_stat_statements" not in conf.read_text():
        with open(conf, "a") as f:
            f.write("\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track_utility = off\n")
        services.stop_postgres(var)
        url = services.ensure_postgres(var)
    return url


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=0, help="Celery worker slots (default: one per cluster)")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    args.concurrency = args.concurrency or args.clusters

    from tools import services

    var = services.default_var_dir() / "capi-bench"
    os.environ["PORTAL_DATABASE_URL"] = private_postgres(var)
    os.environ["PORTAL_REDIS_URL"] = services.ensure_redis(var)
    import benchdb

    try:
        benchdb.setup("corral_bench_capi")
        from clusters.sandbox import Sandbox

        sandbox = Sandbox("capi-bench", var / "sandboxes")
        started = time.monotonic()
        sandbox.up(nodes=1, capi=True)
        print(f"sandbox up --capi in {time.monotonic() - started:.0f} s", flush=True)
        try:
            run(sandbox, args)
        finally:
            sandbox.down()
    finally:
        services.stop_services(var)


class Corral:
    """web, worker and watcher as `make run` starts them (tools/run.py), on the bench's database."""

    def __init__(self, concurrency, logs):
        from tools import services

        self.port = services.free_port()
        env = {**os.environ, "PORTAL_DB_CONN_MAX_AGE": "60", "PORTAL_LOG_LEVEL": "WARNING"}
        commands = {
            "web": [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "portal.asgi:application"],
            "worker": [PYTHON, "-m", "celery", "-A", "portal", "worker", "--loglevel=WARNING", "--pool=threads",
                       f"--concurrency={concurrency}", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            "watcher": [PYTHON, "manage.py", "watch_clusters"],
        }
        logs.mkdir(parents=True, exist_ok=True)
        self.procs = {name: subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                             stderr=open(logs / f"{name}.log", "w"), start_new_session=True)
                      for name, argv in commands.items()}
        self.logs = logs
        self.url = f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self):
        import psutil

        out = {}
        for name, proc in self.procs.items():
            p = psutil.Process(proc.pid)
            total = sum(p.cpu_times()[:2])
            for child in p.children(recursive=True):
                try:
                    total += sum(child.cpu_times()[:2])
                except psutil.NoSuchProcess:
                    pass
            out[name] = total
        return out

    def rss(self):
        import psutil

        return {name: psutil.Process(proc.pid).memory_info().rss for name, proc in self.procs.items()}

    def stop(self):
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def transitions(sandbox):
    """{(CAPI cluster name, condition): when it last turned True} from the Clusters'
    lastTransitionTime (read once, at the end: listing them often while they provision made the
    management cluster's API server too slow to answer Corral, see the README)."""
    out = {}
    for obj in sandbox.api().get(f"{API}/namespaces/default/clusters")["items"]:
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c.get("type") in (*CONDITIONS, "Available") and c.get("status") == "True" and c.get("lastTransitionTime"):
                at = datetime.fromisoformat(c["lastTransitionTime"].replace("Z", "+00:00")).timestamp()
                out[obj["metadata"]["name"], c["type"]] = at
    return out


def run(sandbox, args):
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from clusters.models import ClusterMembership, Node
    from clusters.sandbox import capi
    from portal.models import ApiToken, GlobalRole, GlobalRoleBinding, Operation
    from tests.kube_fixtures import imported_cluster

    owner = User.objects.create_user("bench-owner")
    GlobalRoleBinding.objects.create(user=owner, role=GlobalRole.CREATE_CLUSTERS)
    mc = imported_cluster(sandbox, "management")
    mc.is_management = True
    mc.save(update_fields=["is_management"])
    ClusterMembership.objects.create(cluster=mc, user=owner, role="cluster-owner")
    _, token = ApiToken.issue(owner)
    web = Client()
    web.force_login(owner)
    session = web.cookies["sessionid"].value
    from clusters.capi.classes import classes_of

    classes, problem = classes_of(mc)
    assert not problem, problem
    version = next(c for c in classes if c["name"] == capi.CLASS_NAME)["kubernetes_versions"][-1]
    names = [f"bench-{i:02d}" for i in range(args.clusters)]

    corral = Corral(args.concurrency, sandbox.root / "corral-logs")
    try:
        deadline = time.monotonic() + 60
        import urllib.request

        while True:
            try:
                urllib.request.urlopen(f"{corral.url}/healthz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, f"the web process did not start; see {corral.logs}"
                time.sleep(0.3)
        time.sleep(3)  # the worker and the watcher settle
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            cursor.execute("SELECT pg_stat_statements_reset()")
        own = []  # the bench's own queries in the window (its polling), taken out of the count

        def count_own(execute, sql, params, many, context):
            own.append(sql)
            return execute(sql, params, many, context)
        with connection.execute_wrapper(count_own):
            cpu_before = corral.cpu_seconds()
            started = time.monotonic()
            result = asyncio.run(create_and_follow(corral, token, session, mc, names, version, args, count_own))
            elapsed = time.monotonic() - started
            cpu_after = corral.cpu_seconds()
            with connection.cursor() as cursor:
                cursor.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                               "WHERE d.datname = current_database()")
                queries = cursor.fetchone()[0]
        queries -= len(own)  # (own has the summing query, which is not in the sum, and not the reset, which is)
        rss = corral.rss()
    finally:
        corral.stop()

    created, active = result["created"], result["active"]
    done = [n for n in names if n in active]
    print(f"\n{args.clusters} clusters (1 control plane + {args.workers} workers each) created at once through the API "
          f"(worker: --pool threads --concurrency {args.concurrency}):")
    print(f"  all {args.clusters} POSTs answered in {result['posted']:.1f} s "
          f"(slowest {max(created.values()):.1f} s)")
    if len(done) < len(names):
        print(f"  NOT all done after {args.timeout:.0f} s: {len(done)} of {len(names)} active with their nodes")
        for op in Operation.objects.filter(kind="provision").exclude(status="succeeded").select_related("cluster")[:5]:
            print(f"    {op.target_repr}: {op.status} {op.error} {[line['message'] for line in op.log[-2:]]}")
    if done:
        times = sorted(active[n] for n in done)
        print(f"  active with nodes synced: first {times[0]:.1f} s, median {statistics.median(times):.1f} s, "
              f"last {times[-1]:.1f} s ({len(done)} of {len(names)})")
    turned = transitions(sandbox)
    available = sorted(at - result["t0"] for (_, c), at in turned.items() if c == "Available")
    if available:
        print(f"  (Cluster API's own Available condition, its lastTransitionTime: first {available[0]:.0f} s, "
              f"last {available[-1]:.0f} s, {len(available)} of {len(names)})")
    nodes = Node.objects.filter(cluster__name__in=names).count()
    print(f"  nodes in Corral's inventory: {nodes} (expected {len(names) * (1 + args.workers)})")
    cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
    print(f"  Corral's CPU over the {elapsed:.0f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in cpu.items())
          + f"; total {sum(cpu.values()):.1f} s = {sum(cpu.values()) / args.clusters:.2f} s per cluster")
    print(f"  Corral's database queries: {queries} = {queries / args.clusters:.0f} per cluster "
          f"(pg_stat_statements; the bench's own {len(own)} taken out)")
    print("  Corral's memory at the end: " + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in rss.items()))
    delays = [at - turned[key] for key, at in result["page_events"].items() if key in turned]
    if delays:
        print(f"  a CAPI condition turning True (its lastTransitionTime, whole seconds: up to 1 s added) -> the cluster "
              f"page's websocket receiving the line about it, {len(delays)} changes ({', '.join(CONDITIONS)}):")
        print(f"    p50 {statistics.median(delays):.2f} s  p95 {percentile(delays, 95):.2f} s  max {max(delays):.2f} s")
    missing = len(names) * len(CONDITIONS) - len(delays)
    if missing or result["reopened"]:
        print(f"  ({missing} condition changes without a page event to match; page sockets ended by the server and "
              f"opened again: {result['reopened']})")
    print(f"Corral's logs: {corral.logs}")


async def create_and_follow(corral, token, session, mc, names, version, args, count_own):
    """POST all clusters at once, open a page socket for each, and wait until each is active with
    its nodes synced (polled through the API, as a page would)."""
    import aiohttp
    from asgiref.sync import sync_to_async

    from clusters.models import Cluster, Node
    from clusters.sandbox import capi
    from portal.models import Operation

    headers = {"Authorization": f"Bearer {token}"}
    start, t0 = time.monotonic(), time.time()
    created, events, active, reopened = {}, {}, {}, []

    def body(name):
        return {"name": name, "driver": "capi", "driver_config": {
            "management_cluster": mc.pk, "class": capi.CLASS_NAME, "namespace": capi.CLASS_NAMESPACE, "version": version,
            "control_plane_replicas": 1, "workers": [{"name": "md-0", "class": "default-worker", "replicas": args.workers}],
            "variables": {"machineStartupDuration": "1s"}}}

    async with aiohttp.ClientSession(headers=headers) as http:
        async def create(name):
            async with http.post(f"{corral.url}/api/v1/clusters/", json=body(name)) as response:
                payload = await response.json()
                assert response.status == 201, (name, response.status, payload)
                created[name] = time.monotonic() - start
                return payload["id"]

        ids = dict(zip(names, await asyncio.gather(*(create(n) for n in names))))
        posted = time.monotonic() - start
        by_id = {v: k for k, v in ids.items()}

        async def page(name, cluster_id):
            # As live.js does, a socket the server ends is opened again (the open channels_redis
            # BZPOPMIN race, README); events sent meanwhile are missed, and counted as such.
            async with aiohttp.ClientSession() as browser_like:  # (aiohttp's cookie jar skips IP hosts: a header)
                while name not in active:
                    async with browser_like.ws_connect(f"{corral.url.replace('http', 'ws')}/ws/", origin=corral.url,
                                                       headers={"Cookie": f"sessionid={session}"}) as ws:
                        await ws.send_json({"action": "subscribe", "group": f"cluster-{cluster_id}"})
                        async for message in ws:
                            at = time.time()
                            if message.type != aiohttp.WSMsgType.TEXT:
                                break
                            data = json.loads(message.data)
                            if data.get("event") != "operation.updated":
                                continue
                            for line in data["data"].get("log") or []:
                                for condition in CONDITIONS:
                                    if line["message"].endswith(f"({condition})") and (name, condition) not in events:
                                        events[name, condition] = at
                    if name not in active:
                        reopened.append(name)
                        await asyncio.sleep(1)

        sockets = [asyncio.create_task(page(n, i)) for n, i in ids.items()]
        expected = 1 + args.workers

        def progress():
            from django.db import connection

            with connection.execute_wrapper(count_own):
                return _progress()

        def _progress():
            done = {}
            for op in Operation.objects.filter(kind="provision", cluster_id__in=list(by_id)):
                if op.status == "failed":
                    done[by_id[op.cluster_id]] = "failed"
                elif op.status == "succeeded":
                    done[by_id[op.cluster_id]] = "succeeded"
            counts = {}
            for n in Node.objects.filter(cluster_id__in=list(by_id)).values_list("cluster_id", flat=True):
                counts[n] = counts.get(n, 0) + 1
            return done, {by_id[k]: v for k, v in counts.items()}, Cluster.objects.filter(pk__in=list(by_id), state="active").count()

        last_print = 0
        while len(active) < len(names) and time.monotonic() - start < args.timeout:
            await asyncio.sleep(1)
            done, counts, n_active = await sync_to_async(progress)()
            for name, status in done.items():
                if status == "succeeded" and counts.get(name, 0) >= expected and name not in active:
                    active[name] = time.monotonic() - start
            failed = [n for n, s in done.items() if s == "failed"]
            if time.monotonic() - last_print > 15:
                last_print = time.monotonic()
                print(f"  {time.monotonic() - start:5.0f} s: {n_active} active, {len(active)} with nodes synced, "
                      f"{len(failed)} failed; CAPI milestones on the pages: {len(events)}", flush=True)
            if failed and len(active) + len(failed) == len(names):
                break
        await asyncio.sleep(2)  # the last events in flight
        for task in sockets:
            task.cancel()
        await asyncio.gather(*sockets, return_exceptions=True)

    slugs = dict(await sync_to_async(_slugs)(list(by_id)))
    # The CAPI Cluster is named after the cluster's slug.
    page_events = {(slugs[ids[name]], condition): at for (name, condition), at in events.items()}
    return {"created": created, "posted": posted, "active": active, "page_events": page_events,
            "reopened": len(reopened), "t0": t0}


def _slugs(ids):
    from clusters.models import Cluster

    return list(Cluster.objects.filter(pk__in=ids).values_list("pk", "slug"))


if __name__ == "__main__":
    main()
