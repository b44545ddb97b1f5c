"""2,000 clusters on two cores (issue 14), on PostgreSQL.  Several real sandboxes are registered
many times each as distinct clusters (4 sandboxes of 10 nodes / 100 pods, 500 times each, by
default): Corral holds 2,000 clusters' rows and follows 2,000 x 10 watches, but only 4 API servers
answer them, and one change in a sandbox is a change in each of its 500 clusters.  The output says
so.  Figures:

  - one watcher process following every cluster: its threads, resident memory (target <= 1 GiB),
    the initial catch-up (every cluster listed, its watches started and where they got to stored);
  - a pod deleted in a sandbox: p95 delay until its row is gone from one cluster's inventory and
    until a websocket client subscribed to that cluster hears pod.deleted (target <= 1 s), and until
    it is gone from all the clusters behind that sandbox;
  - two watcher shards, then one SIGKILLed: time until its clusters are followed again (a pod
    deleted in every sandbox just after the kill is gone from every cluster; target <= 30 s), and
    nothing missed (every cluster's pods equal its sandbox's, uid by uid);
  - a full resync of every cluster (Celery's sync, on as many processes as cores; target <= 2 min);
  - p95 of GET /api/v1/clusters/, the dashboard page and a cross-cluster pod search, with their
    query counts (target <= 100 ms each).

    python bench/scale.py                                  # the issue's size
    python bench/scale.py --clusters 400 --sandboxes 2     # smaller

``--watch-only`` measures only the transport of one watcher process: every cluster's watches are
resumed from the sandbox's current resourceVersions (stored as if a watcher had left them there, so
nothing is listed and the inventory stays empty), and the output gives the process's threads,
resident memory (per cluster), TCP connections, the time until every cluster's watches are
connected, and until a namespace created in one sandbox is stored for all of its clusters.

    python bench/scale.py --watch-only --clusters 2000 --sandboxes 4 --nodes 2 --pods 10

``--skip-shards`` leaves out the two shards and the takeover, ``--skip-resync`` the resync,
``--catch-up-limit`` bounds the single watcher's catch-up (3,600 s by default) and
``--takeover-limit`` the surviving shard's (300 s).

``--quiet-takeover`` changes only the probe cluster after the kill, so the takeover is measured
without a burst of changes in every cluster at once (one change in a sandbox is a change in each
of its clusters).

``--shards-only`` runs only the two shards and the takeover after one is SIGKILLed (the shards list
every cluster first, then one is killed), without the single watcher, the resync and the pages.

    python bench/scale.py --shards-only --clusters 200 --sandboxes 4
"""

import argparse
import asyncio
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import benchdb

DB = "corral_bench_scale_watch"
ROOT = Path(__file__).resolve().parents[1]


def p95(samples):
    return statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]


def _worker_init(url):
    os.environ["PORTAL_DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ["PORTAL_LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


def _sync(cluster_id):
    from clusters import sync

    return sum(sync.sync(cluster_id).values())


def wait_for(predicate, timeout, what, every=0.5):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return value


class Watcher:
    """A ``manage.py watch_clusters`` process; its threads and memory read with psutil."""

    def __init__(self, member, log_dir, alone=False):
        import psutil

        env = {**os.environ, "PORTAL_DB_CONN_MAX_AGE": "60", "PORTAL_LOG_LEVEL": "WARNING",
               "PORTAL_CELERY_BROKER_URL": os.environ["PORTAL_REDIS_URL"].rsplit("/", 1)[0] + "/14"}
        argv = [sys.executable, "manage.py", "watch_clusters", "--poll", "2", "--member-id", member] + (["--alone"] if alone else [])
        self.log = open(Path(log_dir) / f"{member}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        self.peak = 0

    def sample(self):
        rss = self.ps.memory_info().rss
        self.peak = max(self.peak, rss)
        return self.ps.num_threads(), rss, len(self.ps.net_connections(kind="tcp"))

    def followed(self, opened=False):
        """Clusters this process started following (listed or resumed), or with ``opened`` had
        every watch open, from its log."""
        text = Path(self.log.name).read_text()
        said = r"every watch open" if opened else r"(?:listing it|resuming its watches)"
        return len(set(re.findall(rf"cluster (\d+): {said}", text)))

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class CpuSplit:
    """CPU seconds used between start() and stop() by the survivor, the sandboxes' components (their
    own processes, by name: kube-apiserver, etcd, kwok, ...) and PostgreSQL."""

    def __init__(self, survivor, boxes):
        self.survivor, self.boxes = survivor.ps, boxes

    def _now(self):
        from resync import _cpu, component_cpu, other_cpu

        return {"survivor": _cpu(self.survivor), **component_cpu(self.boxes), "postgres": other_cpu([])[1]}

    def start(self):
        self.before, self.started = self._now(), time.monotonic()

    def stop(self):
        after, seconds = self._now(), time.monotonic() - self.started
        split = {kind: used - self.before.get(kind, 0.0) for kind, used in after.items()}
        return seconds, ", ".join(f"{kind} {used:.1f}" for kind, used in split.items() if used >= 0.05)


class Reopened:
    """When the surviving shard has every watch of each of ``clusters`` open again (its log says
    "cluster N: every watch open" once all of a cluster's watches were answered and not refused
    within a second, an expired one after its relist; a watch refused later, "expired (410)", is
    not open until it says so again): from then on no change of that cluster is missed.  Read from
    the log written after the kill."""

    def __init__(self, watcher, clusters):
        self.path, self.clusters = Path(watcher.log.name), set(clusters)
        self.offset = self.path.stat().st_size
        self.seen, self.took, self.done = set(), None, None

    def start(self, since):
        import threading

        self.done = threading.Event()

        def follow():
            with open(self.path) as log:
                log.seek(self.offset)
                rest = ""
                while not self.done.wait(0.2):
                    text = rest + log.read()
                    text, _, rest = text.rpartition("\n")  # whole lines only
                    for cluster, said in re.findall(r"cluster (\d+): (every watch open|\w+ watch expired)", text):
                        (self.seen.add if said == "every watch open" else self.seen.discard)(int(cluster))
                    self.seen &= self.clusters
                    if self.seen == self.clusters:
                        self.took = time.monotonic() - since
                        return

        threading.Thread(target=follow, daemon=True).start()

    def stop(self):
        if self.took is None:
            time.sleep(0.5)  # a last read
        self.done.set()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--quiet-takeover", action="store_true",
                        help="after the SIGKILL delete a pod in the probe sandbox only (the takeover without a burst of changes in every cluster)")
    parser.add_argument("--sandboxes", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--fanout-trials", type=int, default=3, help="pods deleted in a sandbox registered many times")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--skip-resync", action="store_true")
    parser.add_argument("--watch-only", action="store_true", help="only the watcher's transport: resumed watches, no lists")
    parser.add_argument("--shards-only", action="store_true", help="only two shards and the takeover after one is killed")
    parser.add_argument("--skip-single", action="store_true", help="no single watcher (the shards, resync, pages)")
    parser.add_argument("--skip-shards", action="store_true", help="no two shards and takeover (the single watcher, resync, pages)")
    parser.add_argument("--first", choices=("together", "survivor", "killed"), default="together",
                        help="which shard starts first: both at once (whichever reads the clusters before it sees the other "
                             "lists them all, then lets the other's share go), or one following every cluster before the other joins")
    parser.add_argument("--at-heartbeat", action="store_true",
                        help="kill the shard as kwok's node heartbeats come (every node of every sandbox updated within "
                             "seconds, every 10 minutes: a change in each of the 2,000 clusters' 10 nodes at once)")
    parser.add_argument("--takeover-limit", type=int, default=300, help="seconds the surviving shard may take to catch up")
    parser.add_argument("--catch-up-limit", type=int, default=3600, help="seconds the single watcher's catch-up may take")
    args = parser.parse_args()

    url = benchdb.setup(DB)
    sync_bench = benchdb.load_bench_module("sync")
    sandbox_bench = benchdb.load_bench_module("sandbox")
    import redis
    from django.conf import settings
    from django.db import connections

    from clusters import shards
    from clusters.models import Cluster, Node, Pod
    from clusters.sandbox import Sandbox

    redis.Redis.from_url(settings.REDIS_URL).delete(shards.KEY)
    tmp = tempfile.mkdtemp(prefix="corral-bench-scale-")
    boxes = []
    boxes_to_stop = []
    watchers = []
    try:
        for index in range(args.sandboxes):
            box = Sandbox(f"bench-scale-{index}", Path(tmp) / f"s{index}")
            print(f"starting sandbox {index} ({args.nodes} nodes, {args.pods} pods) ...", flush=True)
            box.up(nodes=args.nodes, timeout=600)
            boxes.append(box)
            sync_bench.populate(box, args.pods, 4, sandbox_bench.ready_replicas)
        per = args.clusters // args.sandboxes
        clusters = []
        for index, box in enumerate(boxes):
            creds = {"server": box.endpoint, "ca_data": box.ca_pem, "client_cert": box.admin_cert_pem, "client_key": box.admin_key_pem}
            clusters += [Cluster(name=f"c{index}-{i:04d}", slug=f"c{index}-{i:04d}", driver="imported", state="active",
                                 api_endpoint=box.endpoint, credentials=creds) for i in range(per)]
        if args.watch_only:
            watch_only(boxes, clusters, tmp, watchers)
            return
        # One more sandbox, registered once: the delay of a change in one cluster while all the
        # others are followed (a change in the others' sandboxes is a change in hundreds of clusters).
        probe_box = Sandbox("bench-scale-probe", Path(tmp) / "probe")
        print("starting the probe sandbox (2 nodes, 10 pods) ...", flush=True)
        probe_box.up(nodes=2, timeout=600)
        boxes_to_stop.append(probe_box)
        sync_bench.populate(probe_box, 10, 1, sandbox_bench.ready_replicas)
        clusters.append(Cluster(name="probe", slug="probe", driver="imported", state="active", api_endpoint=probe_box.endpoint,
                                credentials={"server": probe_box.endpoint, "ca_data": probe_box.ca_pem,
                                             "client_cert": probe_box.admin_cert_pem, "client_key": probe_box.admin_key_pem}))
        Cluster.objects.bulk_create(clusters)
        probe_id = Cluster.objects.get(slug="probe").pk
        total = per * len(boxes)
        by_box = [list(Cluster.objects.filter(api_endpoint=box.endpoint).order_by("pk").values_list("pk", flat=True)) for box in boxes]
        print(f"{total:,} clusters registered: {len(boxes)} real sandboxes ({args.nodes} nodes, {args.pods} pods each), "
              f"each registered {per:,} times as distinct clusters ({total * args.nodes:,} nodes, {total * args.pods:,} pods "
              f"in Corral's database; {len(boxes)} API servers answer {total * 10:,} watches), and one probe cluster "
              f"(a sandbox of its own, 2 nodes, 10 pods)", flush=True)
        connections.close_all()

        if not (args.shards_only or args.skip_single):
            single_watcher(args, total, probe_box, probe_id, boxes, by_box, watchers, tmp)

        ids = [i for group in by_box for i in group] + [probe_id]
        if not args.skip_shards:
            two_shards(args, total, ids, boxes, by_box, probe_box, probe_id, watchers, tmp)
        if args.shards_only:
            return

        # --- full resync ---
        if not args.skip_resync:
            connections.close_all()
            workers = os.cpu_count() or 2
            started = time.perf_counter()
            with ProcessPoolExecutor(workers, initializer=_worker_init, initargs=(url,)) as pool:
                objects = sum(pool.map(_sync, ids, chunksize=8))
            seconds = time.perf_counter() - started
            print(f"full resync of {total:,} clusters ({workers} processes): {objects:,} objects in {seconds:.1f} s "
                  f"({'meets' if seconds <= 120 else 'MISSES'} the 2-minute target)", flush=True)
    finally:
        for watcher in watchers:
            watcher.stop(signal.SIGKILL)
        for box in boxes + boxes_to_stop:
            box.down()

    print(f"database: {Cluster.objects.count():,} clusters, {Node.objects.count():,} nodes, {Pod.objects.count():,} pods")
    pages(args.requests)


def two_shards(args, total, ids, boxes, by_box, probe_box, probe_id, watchers, tmp):
    """Two watcher shards, then one SIGKILLed: the time until its clusters are followed again."""
    import redis
    from django.conf import settings

    from clusters import shards
    from clusters.models import ClusterWatchState

    for n in range(1000):
        names = [f"shard-{n}-a", f"shard-{n}-b"]
        owned = [i for i in ids if shards.owner(i, names) == names[0]]
        if abs(len(owned) - total / 2) < total / 10:
            break
    leases = redis.Redis.from_url(settings.REDIS_URL)
    if args.first == "together":
        shard_a, shard_b = Watcher(names[0], tmp), Watcher(names[1], tmp)
    else:  # one follows every cluster (each listed or resumed) before the other joins and takes its share
        first, second = (names[1], names[0]) if args.first == "survivor" else names
        alone = Watcher(first, tmp)
        watchers.append(alone)
        wait_for(lambda: alone.followed(opened=True) >= total + 1, 1800, f"{first} to follow every cluster alone", every=2)
        joined = Watcher(second, tmp)
        watchers.remove(alone)
        shard_a, shard_b = (joined, alone) if args.first == "survivor" else (alone, joined)
        print(f"  {first} followed every cluster alone; then {second} joined", flush=True)
    watchers += [shard_a, shard_b]
    # Each follows everything until it sees the other: wait until both hold a lease, then until
    # each follows its own share (a pod deleted everywhere is gone from every cluster).
    wait_for(lambda: {m.decode() for m in leases.zrange(shards.KEY, 0, -1)} >= set(names), 600, "both shards' leases")
    time.sleep(5)
    probe_all(boxes + [probe_box], by_box + [[probe_id]], 1800, "both shards to follow their clusters")
    # Killed in the steady state: every cluster listed and where its watches got to stored.
    wait_for(lambda: ClusterWatchState.objects.count() >= total + 1, 1800, "every cluster's watch state", every=2)
    time.sleep(5)  # where every watch got to is stored (every 2 s)
    compact_as_the_api_server_does(boxes + [probe_box], by_box + [[probe_id]])
    print(f"two watcher shards: {len(owned):,} and {total - len(owned):,} clusters; "
          f"{shard_a.sample()[1] / 2**20:,.0f} and {shard_b.sample()[1] / 2**20:,.0f} MiB resident; load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.at_heartbeat:
        wait_for_heartbeats(boxes)
    followed = shard_a.followed()
    orphans = set(owned) | ({probe_id} if shards.owner(probe_id, names) == names[0] else set())
    reopened, cpu = Reopened(shard_b, orphans), CpuSplit(shard_b, boxes + [probe_box])
    cpu.start()
    shard_a.stop(signal.SIGKILL)
    watchers.remove(shard_a)
    killed = time.monotonic()
    reopened.start(killed)
    print(f"  the shard killed at {time.strftime('%H:%M:%S')} was following {followed:,} clusters", flush=True)
    changed = [(probe_box, [probe_id])] if args.quiet_takeover else list(zip(boxes + [probe_box], by_box + [[probe_id]]))
    took = probe_all(*zip(*changed), args.takeover_limit, "the surviving shard to take over", since=killed)
    while reopened.took is None and time.monotonic() - killed < args.takeover_limit:
        time.sleep(0.5)  # the change may have been in a cluster the survivor already followed
    reopened.stop()
    seconds, split = cpu.stop()
    if reopened.took is None:
        print(f"  shard SIGKILLed: the survivor had every watch open again for {len(reopened.seen):,} of its "
              f"{len(orphans):,} clusters only", flush=True)
    else:
        print(f"  shard SIGKILLed: its {len(orphans):,} clusters followed again (the survivor has every watch of each open, "
              f"resumed where the dead shard left them) after {reopened.took:.1f} s "
              f"({'meets' if reopened.took <= 30 else 'MISSES'} the 30 s target)", flush=True)
    print(f"  CPU seconds in those {seconds:.0f} s (2 cores: {2 * seconds:.0f} at most): {split}", flush=True)
    print(f"  a pod deleted {'in the probe sandbox (the other clusters quiet)' if args.quiet_takeover else f'in every sandbox (a burst of changes in all {total:,} clusters at once)'} "
          f"right after the kill is gone from every cluster after {took:.1f} s; load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    deadline = time.monotonic() + 120
    while (differ := compare(boxes + [probe_box], by_box + [[probe_id]])) and time.monotonic() < deadline:
        time.sleep(2)
    print("  nothing missed: every cluster's pods equal its sandbox's, uid by uid" if not differ else
          f"  MISSED: {len(differ)} clusters' pods differ from their sandbox's after 2 minutes", flush=True)
    threads, rss, _ = shard_b.sample()
    print(f"  the surviving shard follows all {total:,}: {threads} threads, {rss / 2**20:,.0f} MiB resident")
    shard_b.stop()
    watchers.remove(shard_b)


HEARTBEAT_SECONDS = 600  # kwok's node heartbeat: every 600 to 610 s (clusters/sandbox/kwok-stages.yaml)


def wait_for_heartbeats(boxes):
    """Sleep until kwok's next node heartbeats are due (a second before): every node of a
    sandbox started together gets them within the same few seconds."""
    from datetime import datetime

    last = max(datetime.fromisoformat(condition["lastHeartbeatTime"].replace("Z", "+00:00")).timestamp()
               for box in boxes for node in box.api().get("/api/v1/nodes")["items"]
               for condition in node["status"].get("conditions") or [] if condition.get("lastHeartbeatTime"))
    due = last + HEARTBEAT_SECONDS - time.time()
    print(f"  the nodes' next heartbeats are due in {max(due, 0):.0f} s: the shard is killed then", flush=True)
    if due > 1:
        time.sleep(due - 1)


def compact_as_the_api_server_does(boxes, by_box, timeout=600):
    """Make the shards' stored versions as old as they are in a steady state: kube-apiserver
    compacts etcd every 5 minutes to the revision it noted 5 minutes before.  Watches with a watch
    cache get bookmarks that move their stored versions past that revision; events (no watch cache
    in the API server, so no bookmarks) keep the version of their last change, so a shard killed
    after a quiet while leaves its clusters' events watches expired.  Noted now, compacted once
    every other stored version has moved past it."""
    from clusters.models import ClusterWatchState
    from clusters.watcher import WATCHED

    bookmarked = set(WATCHED) - {"events"}
    noted = [box.etcd_revision() for box in boxes]
    started = time.monotonic()

    def moved_past():
        stored = dict(ClusterWatchState.objects.values_list("cluster_id", "versions"))
        return all(int(version) >= revision
                   for ids, revision in zip(by_box, noted) for i in ids
                   for resource, version in (stored.get(i) or {}).items() if resource in bookmarked and version)

    wait_for(moved_past, timeout, "bookmarks to move every stored version but the events' past etcd's revision", every=5)
    for box, revision in zip(boxes, noted):
        box.compact_etcd(revision)
    events = [int(box.api().get("/api/v1/events?limit=1")["metadata"].get("remainingItemCount") or 0) + 1 for box in boxes]
    stored = dict(ClusterWatchState.objects.values_list("cluster_id", "versions"))
    expired = sum(int((stored.get(i) or {}).get("events") or 0) < revision for ids, revision in zip(by_box, noted) for i in ids)
    print(f"  etcd compacted as kube-apiserver does every 5 minutes ({time.monotonic() - started:.0f} s for the bookmarks): "
          f"{expired:,} clusters' stored events versions expired "
          f"(their sandboxes hold {', '.join(f'{n:,}' for n in events)} events)", flush=True)


def single_watcher(args, total, probe_box, probe_id, boxes, by_box, watchers, tmp):
    """One watcher process following every cluster: threads, memory, catch-up, deletion delays."""
    from clusters.models import ClusterWatchState, Pod

    # --- one watcher process follows every cluster ---
    single = Watcher("bench-single", tmp, alone=True)
    watchers.append(single)
    started = time.monotonic()
    expected = total * args.pods + 10
    last = [started]

    def caught_up():
        threads, rss, _ = single.sample()
        states, pods = ClusterWatchState.objects.count(), Pod.objects.count()
        if time.monotonic() - last[0] >= 60:  # progress, once a minute
            last[0] = time.monotonic()
            print(f"  catching up, {last[0] - started:.0f} s: {states:,} of {total + 1:,} clusters followed, {pods:,} of "
                  f"{expected:,} pods stored, {threads} threads, {rss / 2**20:,.0f} MiB resident, load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
        return states >= total + 1 and pods >= expected

    wait_for(caught_up, args.catch_up_limit, "the initial catch-up", every=2)
    caught_up = time.monotonic() - started
    time.sleep(10)  # every watch connected
    threads, rss, sockets = single.sample()
    print(f"one watcher process, {total:,} clusters:")
    print(f"  initial catch-up  {caught_up:.1f} s (every cluster listed: {Pod.objects.count():,} pods, watches started)")
    print(f"  threads           {threads}")
    print(f"  memory            {rss / 2**20:,.0f} MiB resident (peak seen {single.peak / 2**20:,.0f} MiB; "
          f"{'meets' if rss <= 2**30 else 'MISSES'} the 1 GiB target)")
    print(f"  TCP connections   {sockets:,}", flush=True)

    db_delays, ws_delays, _ = asyncio.run(deletion_delays(probe_box, [probe_id], args.trials))
    print(f"  probe pod deleted -> its row gone            p50 {statistics.median(db_delays) * 1000:.0f} ms, p95 {p95(db_delays) * 1000:.0f} ms "
          f"({'meets' if p95(db_delays) <= 1 else 'MISSES'} the 1 s target), {args.trials} trials")
    print(f"  probe pod deleted -> websocket pod.deleted    p50 {statistics.median(ws_delays) * 1000:.0f} ms, p95 {p95(ws_delays) * 1000:.0f} ms "
          f"({'meets' if p95(ws_delays) <= 1 else 'MISSES'} the 1 s target)")
    print(f"    each trial, to the database, in order: {', '.join(f'{d * 1000:.0f}' for d in db_delays)} ms", flush=True)
    _, _, all_delays = asyncio.run(deletion_delays(boxes[0], by_box[0], args.fanout_trials))
    print(f"  a pod deleted in a sandbox registered {len(by_box[0])} times -> gone from all {len(by_box[0])} clusters: "
          f"{', '.join(f'{d:.1f}' for d in all_delays)} s ({len(all_delays)} trials)", flush=True)
    threads, rss, sockets = single.sample()
    print(f"  after the deletions: {threads} threads, {rss / 2**20:,.0f} MiB resident (peak seen {single.peak / 2**20:,.0f} MiB)", flush=True)
    single.stop()
    watchers.remove(single)


def watch_only(boxes, clusters, tmp, watchers):
    """One watcher process resuming every cluster's watches; its threads, memory and connections."""
    from django.db import connections

    from clusters.kube.inventory import RESOURCES
    from clusters.models import Cluster, ClusterWatchState, Namespace
    from clusters.watcher import WATCHED

    # The same process following no cluster: what Django and the watcher's code take by themselves.
    idle = Watcher("bench-idle", tmp, alone=True)
    time.sleep(20)
    base_rss = idle.sample()[1]
    idle.stop()
    Cluster.objects.bulk_create(clusters, batch_size=500)
    states = []
    for box in boxes:
        versions = {r: box.api().get(RESOURCES[r] + "?limit=1")["metadata"]["resourceVersion"] for r in WATCHED}
        states += [ClusterWatchState(cluster=c, server=box.endpoint, versions=versions) for c in Cluster.objects.filter(api_endpoint=box.endpoint)]
    ClusterWatchState.objects.bulk_create(states, batch_size=500)
    total = len(clusters)
    ports = {int(box.endpoint.rsplit(":", 1)[1]) for box in boxes}
    print(f"{total:,} clusters registered: {len(boxes)} real sandboxes, each {total // len(boxes):,} times; watches resumed "
          f"({total * 10:,} watches), nothing listed", flush=True)
    connections.close_all()
    single = Watcher("bench-watch-only", tmp, alone=True)
    watchers.append(single)
    started = time.monotonic()

    def to_sandboxes():
        return sum(1 for c in single.ps.net_connections(kind="tcp") if c.raddr and c.raddr.port in ports and c.status == "ESTABLISHED")

    wait_for(lambda: single.sample() and to_sandboxes() >= total, 1800, "every cluster's connection", every=2)
    connected = time.monotonic() - started
    time.sleep(15)  # every stream opened
    threads, rss, sockets = single.sample()
    print(f"one watcher process, {total:,} clusters (transport only):")
    print(f"  every cluster connected  {connected:.1f} s after start")
    print(f"  threads                  {threads}")
    print(f"  TCP connections          {sockets:,} in all, {to_sandboxes():,} to the API servers "
          f"({to_sandboxes() / total:.2f} a cluster, {total * 10:,} watches)")
    print(f"  memory                   {rss / 2**20:,.0f} MiB resident (peak seen {single.peak / 2**20:,.0f} MiB); "
          f"{(rss - base_rss) / total / 1024:,.0f} KiB a cluster over the {base_rss / 2**20:,.0f} MiB of the same process following none "
          f"({'meets' if rss <= 2**30 else 'MISSES'} the 1 GiB target)", flush=True)
    name = f"bench-{int(time.time())}"
    box = boxes[0]
    per = Cluster.objects.filter(api_endpoint=box.endpoint).count()
    started = time.monotonic()
    box.api().create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_for(lambda: Namespace.objects.filter(name=name).count() >= per, 600, "the namespace in every cluster", every=0.2)
    print(f"  a namespace created in a sandbox registered {per:,} times: stored for all {per:,} after {time.monotonic() - started:.1f} s")
    threads, rss, sockets = single.sample()
    print(f"  after it: {threads} threads, {rss / 2**20:,.0f} MiB resident (peak seen {single.peak / 2**20:,.0f} MiB)", flush=True)
    box.api().request("DELETE", f"/api/v1/namespaces/{name}")
    single.stop()
    watchers.remove(single)


def still_stored(pairs):
    """Of ``pairs`` ((cluster id, pod uid)), those whose pod is still in the cluster's inventory.
    Looked up by (cluster, uid), the inventory's unique index: by uid alone it was a parallel scan
    of every pod, 5 times a second, a core of PostgreSQL taken from the shards measured."""
    from django.db.models import Q

    from clusters.models import Pod

    by_uid = {}
    for cluster_id, uid in pairs:
        by_uid.setdefault(uid, []).append(cluster_id)
    if not by_uid:
        return set()
    wanted = Q()
    for uid, ids in by_uid.items():
        wanted |= Q(uid=uid, cluster_id__in=ids)
    return set(Pod.objects.filter(wanted).values_list("cluster_id", "uid"))


def probe_all(boxes, by_box, timeout, what, since=None):
    """Delete one pod in every sandbox; seconds until each is gone from all its clusters."""
    started = since or time.monotonic()
    left = set()
    for box, ids in zip(boxes, by_box):
        pod = box.api().get("/api/v1/namespaces/bench/pods?limit=1")["items"][0]["metadata"]
        box.api().request("DELETE", f"/api/v1/namespaces/bench/pods/{pod['name']}?gracePeriodSeconds=0")
        left |= {(cluster_id, pod["uid"]) for cluster_id in ids}
    reported = [time.monotonic()]

    def gone():
        nonlocal left
        left = still_stored(left)  # (a pod gone from a cluster does not come back)
        if left and time.monotonic() - reported[0] >= 30:
            reported[0] = time.monotonic()
            print(f"    {time.monotonic() - started:.0f} s: a deleted pod still in {len(left):,} clusters", flush=True)
        return not left
    wait_for(gone, timeout, what, every=0.2)
    return time.monotonic() - started


def compare(boxes, by_box):
    """Clusters whose pods differ from their sandbox's (by uid)."""
    from clusters.models import Pod

    differ = []
    for box, ids in zip(boxes, by_box):
        listed = {p["metadata"]["uid"] for p in box.api().get("/api/v1/pods")["items"]}
        stored = {}
        for cluster_id, uid in Pod.objects.filter(cluster_id__in=ids).values_list("cluster_id", "uid").iterator(chunk_size=20000):
            stored.setdefault(cluster_id, set()).add(uid)
        differ += [i for i in ids if stored.get(i, set()) != listed]
    return differ


async def deletion_delays(box, ids, trials):
    """Delete pods in ``box`` one at a time; delays to one cluster's row, its websocket, all its clusters."""
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import User
    from django.test import Client

    from clusters.models import Pod
    from portal.asgi import application

    def cookie():
        user = User.objects.filter(username="bench-admin").first() or User.objects.create_superuser("bench-admin", "", "bench-admin-password")
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", f"sessionid={await sync_to_async(cookie)()}".encode())]
    socket = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, _ = await socket.connect()
    assert connected
    watched = ids[len(ids) // 2]
    await socket.send_json_to({"action": "subscribe", "group": f"cluster-{watched}"})
    await socket.receive_json_from(timeout=10)
    api = box.api()
    db_delays, ws_delays, all_delays = [], [], []
    for _ in range(trials):
        while not await socket.receive_nothing(timeout=0.2):
            await socket.receive_json_from()
        pod = await sync_to_async(lambda: Pod.objects.filter(cluster_id=watched, phase="Running").values_list("name", "uid").first())()
        started = time.monotonic()
        await sync_to_async(api.request)("DELETE", f"/api/v1/namespaces/bench/pods/{pod[0]}?gracePeriodSeconds=0")

        async def heard(pod=pod, started=started):
            """The delay until the socket hears of the deletion; infinite when it never does (a
            live event dropped), so the p95 says so instead of the bench stopping."""
            while True:
                try:
                    message = await socket.receive_json_from(timeout=120)
                except TimeoutError:
                    return math.inf
                if message.get("event") == "pod.deleted" and message["data"]["uid"] == pod[1]:
                    return time.monotonic() - started

        async def gone(pod=pod, started=started):
            while await sync_to_async(Pod.objects.filter(cluster_id=watched, uid=pod[1]).exists)():
                await asyncio.sleep(0.01)
            return time.monotonic() - started

        ws, db = await asyncio.gather(heard(), gone())
        ws_delays.append(ws)
        db_delays.append(db)
        left = {(cluster_id, pod[1]) for cluster_id in ids}
        while left := await sync_to_async(still_stored)(left):
            await asyncio.sleep(0.05)
        all_delays.append(time.monotonic() - started)
        await asyncio.sleep(1)  # the ReplicaSet's replacement arrives
    await socket.disconnect()
    return db_delays, ws_delays, all_delays


def pages(requests):
    """The pages as the administrator, measured as bench/clusters_scale.py measures them."""
    from django.contrib.auth.models import User

    benchdb.load_bench_module("clusters_scale").timed_pages(User.objects.get(username="bench-admin"), requests)


if __name__ == "__main__":
    main()
