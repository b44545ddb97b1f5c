"""Alerts: how fast a node going NotReady reaches a webhook, and what a periodic evaluation pass
over many clusters costs.

    python bench/alerts.py latency --trials 20     # a sandbox, the watcher, a real Celery worker, a local webhook
    python bench/alerts.py scale --clusters 2000   # 10 rules per cluster, 50 pods and 10 nodes each, in the database
    python bench/alerts.py ingest --clusters 2000  # usage points written as collections write them; size per cluster per day

latency: the node's kwok heartbeat is stopped and its Ready condition set to False; the time is from
that kubectl patch returning to the webhook receiving the firing notification (rule: for 0 s, group
wait 0 s), then the node is made Ready again and the resolved notification awaited.  The path is the
production one: watch event -> watcher's writer -> inventory_changed -> Celery (Redis) -> worker
evaluates -> flush -> deliver -> HTTP POST.

scale: one periodic pass (``monitoring.evaluate.evaluate_all``) over every cluster's rules, the first
(which opens the alerts) and a steady one (nothing changed), wall time and time spent in the database;
``--repeat`` times (the machine is shared: best and median say more than one run), ``--profile``
prints where the time goes.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import benchdb

ROOT = Path(__file__).resolve().parents[1]


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def latency(args):
    url = benchdb.setup("corral_bench_alerts")
    sys.path.insert(0, str(ROOT))
    from clusters.models import Cluster, Node
    from clusters.sandbox import Sandbox
    from clusters.watcher import ClusterWatch
    from monitoring.models import AlertRule, Notifier
    from tests.receivers import HTTPReceiver
    from tests.test_alerts_sandbox import make_not_ready, make_ready, own_node

    receiver = HTTPReceiver()
    # The receiver listens on loopback, which notifiers may not reach by default.
    env = {**os.environ, "PORTAL_DATABASE_URL": url, "PORTAL_LOG_LEVEL": "WARNING", "PORTAL_NOTIFIER_DENIED_NETWORKS": "169.254.0.0/16"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal.celery", "worker", "-P", "threads", "-c", "4", "--without-heartbeat",
         "--without-gossip", "--without-mingle", "-l", "WARNING"], cwd=ROOT, env=env,
    )
    with tempfile.TemporaryDirectory(prefix="corral-bench-alerts-") as tmp:
        sandbox = Sandbox("bench-alerts", Path(tmp))
        sandbox.up(nodes=3, timeout=300)
        watch = None
        try:
            cluster = Cluster.objects.create(name="bench", driver="imported", state="active", api_endpoint=sandbox.endpoint, credentials={
                "server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem})
            notifier = Notifier.objects.create(name="hook", kind="webhook", config={"url": f"{receiver.url}/hook", "secret": "bench"})
            rule = AlertRule.objects.create(name="node down", cluster=cluster, condition="node-not-ready", for_seconds=0,
                                            group_wait_seconds=0, group_interval_seconds=0)
            rule.notifiers.add(notifier)
            node = own_node(sandbox, "kwok-alerts-bench")
            watch = ClusterWatch(cluster.pk, None)
            watch.start()
            deadline = time.monotonic() + 60
            while not (Node.objects.filter(cluster=cluster, name=node, ready=True).exists() and watch.following.is_set()):
                assert time.monotonic() < deadline, "the watcher never listed the sandbox"
                time.sleep(0.1)
            time.sleep(2)  # every watch connected
            fired, resolved = [], []
            for trial in range(args.trials):
                count = len(receiver.requests)
                make_not_ready(sandbox, node)
                started = time.monotonic()
                got = receiver.wait_for(count + 1, timeout=60)[count]
                assert got["json"]["kind"] == "firing", got["json"]
                fired.append(got["at"] - started)
                make_ready(sandbox, node)
                started = time.monotonic()
                got = receiver.wait_for(count + 2, timeout=60)[count + 1]
                assert got["json"]["kind"] == "resolved", got["json"]
                resolved.append(got["at"] - started)
                print(f"  trial {trial + 1:2d}: fired after {fired[-1]:.2f} s, resolved after {resolved[-1]:.2f} s", flush=True)
            print(f"node NotReady -> webhook, {args.trials} trials (rule for 0 s, group wait 0 s; real watcher, Redis, Celery worker):")
            print(f"  firing    p50 {statistics.median(fired):.2f} s   p95 {percentile(fired, 95):.2f} s   max {max(fired):.2f} s")
            print(f"  resolved  p50 {statistics.median(resolved):.2f} s   p95 {percentile(resolved, 95):.2f} s   max {max(resolved):.2f} s")
        finally:
            if watch:
                watch.stop(wait=10)
            sandbox.down()
            worker.terminate()
            worker.wait(timeout=30)
            receiver.close()


def scale(args):
    benchdb.setup("corral_bench_alert_scale")
    from django.db import connection

    from clusters.models import Cluster, Namespace, Node, Pod, Workload
    from monitoring import evaluate
    from monitoring.models import Alert, AlertGroup, AlertRule

    n, nodes_per, pods_per = args.clusters, 10, args.pods // args.clusters
    started = time.monotonic()
    clusters = Cluster.objects.bulk_create([Cluster(name=f"c-{i:05d}", slug=f"c-{i:05d}", driver="imported", state="active")
                                            for i in range(n)])
    namespaces = Namespace.objects.bulk_create([Namespace(cluster=c, uid=f"ns-{c.pk}", name="apps") for c in clusters])
    Node.objects.bulk_create([Node(cluster=c, uid=f"n-{c.pk}-{j}", name=f"node-{j}", ready=not (j == 0 and c.pk % 50 == 0),
                                   cpu_allocatable_m=4000, memory_allocatable_bytes=16 * 2**30) for c in clusters for j in range(nodes_per)],
                             batch_size=5000)
    workloads = Workload.objects.bulk_create([Workload(cluster=c, namespace=ns, uid=f"w-{c.pk}", name="web", kind="deployment",
                                                       desired_replicas=pods_per, available_replicas=pods_per - (1 if c.pk % 20 == 0 else 0))
                                              for c, ns in zip(clusters, namespaces)])
    node_ids = dict(((c, name), pk) for c, name, pk in Node.objects.values_list("cluster_id", "name", "pk"))
    Pod.objects.bulk_create([
        Pod(cluster=c, namespace=ns, workload=w, uid=f"p-{c.pk}-{k}", name=f"web-{k}", node_id=node_ids[(c.pk, f"node-{k % nodes_per}")],
            node_name=f"node-{k % nodes_per}", phase="Pending" if k == 0 and c.pk % 10 == 0 else "Running",
            restarts=7 if k == 1 and c.pk % 25 == 0 else 0, waiting_reason="CrashLoopBackOff" if k == 1 and c.pk % 25 == 0 else "",
            cpu_request_m=100, memory_request_bytes=2**28)
        for c, ns, w in zip(clusters, namespaces, workloads) for k in range(pods_per)
    ], batch_size=10000)
    conditions = [("node-not-ready", None, None), ("pod-not-running", None, None), ("pod-not-scheduled", None, None),
                  ("pod-restarts", 5, None), ("workload-unavailable", 100, None), ("cpu-requested-percent", 80, None),
                  ("pod-crash-looping", None, None), ("cluster-unavailable", None, None), ("warning-event", None, None),
                  ("pod-restarts", 3, 600)]  # the last: restarts within 10 minutes (the restart history is recorded each pass)
    AlertRule.objects.bulk_create([AlertRule(name=f"{cond}-{i}", cluster=c, condition=cond, threshold=t, window_seconds=w, for_seconds=0)
                                   for c in clusters for i, (cond, t, w) in enumerate(conditions)], batch_size=10000)
    print(f"{n:,} clusters, {AlertRule.objects.count():,} rules, {Node.objects.count():,} nodes, {Pod.objects.count():,} pods "
          f"(made in {time.monotonic() - started:.0f} s)")

    class Timer:
        def __init__(self):
            self.seconds, self.queries = 0.0, 0

        def __call__(self, execute, sql, params, many, context):
            t = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                self.seconds += time.perf_counter() - t
                self.queries += 1

    figures = defaultdict(list)
    for run in range(args.repeat):
        if run:  # start again from no alerts: the first pass opens them all again
            Alert.objects.all().delete()
            AlertGroup.objects.all().delete()
        for label in ("first pass (opens the alerts)", "steady pass (nothing changed)"):
            timer = Timer()
            with connection.execute_wrapper(timer):
                t = time.monotonic()
                if args.profile:
                    import cProfile
                    import pstats

                    profile = cProfile.Profile()
                    profile.runcall(evaluate.evaluate_all)
                else:
                    evaluate.evaluate_all()
                wall = time.monotonic() - t
            if args.profile:
                pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
            figures[label].append((wall, timer.seconds, timer.queries))
            print(f"  {label}: {wall:.1f} s wall, {timer.seconds:.1f} s in the database, {timer.queries:,} queries; "
                  f"{Alert.objects.filter(state='firing').count():,} alerts firing", flush=True)
    if args.repeat > 1:
        for label, runs in figures.items():
            walls = sorted(w for w, _, _ in runs)
            print(f"  {label}, {len(runs)} runs: best {walls[0]:.1f} s, median {statistics.median(walls):.1f} s, worst {walls[-1]:.1f} s wall; "
                  f"database median {statistics.median(d for _, d, _ in runs):.1f} s")
    print(f"  load average during the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def ingest(args):
    """Usage points as ``monitoring.usage.collect`` writes them (the metrics.k8s.io reads left out):
    per collection and cluster 10 nodes, 5 namespaces, 5 workloads, 2 projects and the cluster."""
    benchdb.setup("corral_bench_usage")
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from clusters.models import Cluster
    from monitoring import usage
    from monitoring.models import UsageSample

    clusters = Cluster.objects.bulk_create([Cluster(name=f"u-{i:05d}", slug=f"u-{i:05d}", driver="imported", state="active")
                                            for i in range(args.clusters)])
    names = [("node", f"node-{j}") for j in range(10)] + [("namespace", f"ns-{j}") for j in range(5)] + \
            [("workload", f"ns-{j}/web") for j in range(5)] + [("project", str(j)) for j in range(2)] + [("cluster", "")]
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=2)
    written, seconds = 0, 0.0
    for step in range(args.collections):
        at = start + timedelta(seconds=30 * step)
        rows = [UsageSample(cluster=c, kind=kind, name=name, at=at, cpu_m=100.0 + step, memory_bytes=2.0**28,
                            cluster_wide=c if kind in ("node", "cluster") else None) for c in clusters for kind, name in names]
        t = time.perf_counter()
        UsageSample.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)
        seconds += time.perf_counter() - t
        written += len(rows)
    print(f"{args.clusters:,} clusters x {len(names)} series, {args.collections} collections: {written:,} points in {seconds:.1f} s "
          f"({written / seconds:,.0f} points/s written)")
    t = time.perf_counter()
    rolled = usage.rollup(now=start + timedelta(seconds=30 * args.collections))
    print(f"  rollup of them: {rolled:,} 5-minute and hourly points in {time.perf_counter() - t:.1f} s")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [UsageSample._meta.db_table])
        size = cursor.fetchone()[0]
    per_point = size / UsageSample.objects.count()
    per_day = len(names) * (2880 + 288 + 24) * per_point  # raw every 30 s, 5-minute and hourly points
    print(f"  table with indexes: {size / 2**20:,.0f} MiB, {per_point:.0f} bytes a point; one cluster's day: "
          f"{per_day / 2**20:.1f} MiB ({len(names) * 2880:,} raw points); kept: a day raw, 30 days 5-minute, a year hourly -> "
          f"{len(names) * per_point * (2880 + 288 * 30 + 24 * 365) / 2**20:.0f} MiB a cluster")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--trials", type=int, default=20)
    p = sub.add_parser("scale")
    p.add_argument("--clusters", type=int, default=2000)
    p.add_argument("--pods", type=int, default=100000)
    p.add_argument("--profile", action="store_true", help="print where the passes spend their time")
    p.add_argument("--repeat", type=int, default=3, help="first and steady passes this many times (alerts cleared between)")
    p = sub.add_parser("ingest")
    p.add_argument("--clusters", type=int, default=2000)
    p.add_argument("--collections", type=int, default=20)
    args = parser.parse_args()
    {"latency": latency, "scale": scale, "ingest": ingest}[args.what](args)


if __name__ == "__main__":
    main()
