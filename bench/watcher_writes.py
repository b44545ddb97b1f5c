"""The watcher's write path on its own (PostgreSQL, Redis): watch events queued to the real writer
threads (``clusters.watcher.Writers``) as the event loop queues them, without API servers, so the
figure is the database side alone.  A round is, for each of N clusters, a heartbeat of each of its
nodes (nothing visible changes) and a status change of a share of its pods, with the live events
sent to Redis.  Printed: events written per second and queries per event, with each cluster's
changes written together (the watcher's way) and one change per transaction (``--batch 1``).

    python bench/watcher_writes.py                      # 200 clusters x (10 nodes, 100 pods)
    python bench/watcher_writes.py --clusters 50 --rounds 3

``--fanout`` writes instead what one pod deleted in a sandbox registered as N clusters brings to
each of them (bench/scale.py's probe, and its takeover's burst): the pod deleted, its replacement
added then running, the Deployment's status, three Kubernetes events, and what the watcher's loop
queues after them (the dashboard's summary, the changed resources announced, where the watches got
to stored).  Printed: clusters a second.

    python bench/watcher_writes.py --fanout --clusters 500 --rounds 3
"""

import argparse
import time

import benchdb


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--changed", type=int, default=10, help="pods changed per cluster per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fanout", action="store_true", help="a pod replaced in every cluster (see above)")
    args = parser.parse_args()
    benchdb.setup("corral_bench_watcher_writes")
    from django.db import connection, reset_queries
    from django.test.utils import override_settings

    from clusters import watcher
    from clusters.models import Cluster, Namespace, Node, Pod

    clusters = Cluster.objects.bulk_create([Cluster(name=f"w{i:04d}", slug=f"w{i:04d}", driver="imported", state="active",
                                                    api_endpoint="https://x", credentials={}) for i in range(args.clusters)])
    Namespace.objects.bulk_create([Namespace(cluster=c, name="bench", uid=f"ns-{c.pk}", resource_version="1") for c in clusters])

    def node(c, n, version, heartbeat):
        return {"metadata": {"name": f"n{n}", "uid": f"node-{c.pk}-{n}", "resourceVersion": str(version)},
                "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat}],
                           "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}, "nodeInfo": {"kubeletVersion": "v1.31.0"}}}

    def pod(c, p, version, phase):
        return {"metadata": {"name": f"web-{p}", "uid": f"pod-{c.pk}-{p}", "namespace": "bench", "resourceVersion": str(version),
                             "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc", "controller": True}], "labels": {"pod-template-hash": "abc"}},
                "spec": {"nodeName": f"n{p % args.nodes}", "containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "100m"}}}]},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if phase == "Running" else "False"}]}}

    version = [1000]

    def rv():
        version[0] += 1
        return version[0]

    def run(batch, label, first=False):
        watcher.BATCH = batch
        pool = watcher.Writers()
        watches = {c.pk: watcher.ClusterWatch(c.pk, None, pool=pool) for c in clusters}
        with override_settings(DEBUG=True):
            for round_ in range(args.rounds):
                reset_queries()
                heartbeat = f"2026-01-01T00:{round_:02d}:00Z"
                phase = "Running" if round_ % 2 == 0 else "Pending"
                changes = []
                for c in clusters:
                    changes += [(c.pk, ("nodes", "MODIFIED", node(c, n, rv(), heartbeat))) for n in range(args.nodes)]
                    pods = range(args.pods) if first and round_ == 0 else range(round_ % 10, args.pods, max(1, args.pods // args.changed))
                    changes += [(c.pk, ("pods", "MODIFIED", pod(c, p, rv(), phase))) for p in pods]
                started = time.perf_counter()
                for cluster_id, change in changes:
                    pool.submit(cluster_id, watcher.Change(watches[cluster_id], *change))
                pool.drain(timeout=3600)
                seconds = time.perf_counter() - started
                print(f"  {label}, round {round_ + 1}: {len(changes):,} events ({args.clusters} clusters) in {seconds:.1f} s: "
                      f"{len(changes) / seconds:,.0f} events/s", flush=True)
        connection.close()

    if args.fanout:
        fanout(args, clusters, node, pod, rv, watcher, connection)
        return
    print(f"{args.clusters} clusters x ({args.nodes} nodes, {args.pods} pods); a round: every node's heartbeat and "
          f"{args.changed} pods' status per cluster; the first round writes every pod")
    run(watcher.BATCH, "batched (the watcher's way)", first=True)
    run(1, "one change per transaction")
    print(f"database: {Node.objects.count():,} nodes, {Pod.objects.count():,} pods")


def fanout(args, clusters, node, pod, rv, watcher, connection):
    from django.utils import timezone

    pool = watcher.Writers()
    watches = {c.pk: watcher.ClusterWatch(c.pk, None, pool=pool) for c in clusters}
    for watch in watches.values():
        watch.server = "https://x"

    def deployment(ready, version):
        return {"metadata": {"name": "web", "uid": "deploy-web", "namespace": "bench", "resourceVersion": str(version)},
                "spec": {"replicas": args.pods, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
                "status": {"readyReplicas": ready, "availableReplicas": ready}}

    def event(c, n, reason, version):
        now = timezone.now().isoformat().replace("+00:00", "Z")
        return {"metadata": {"name": f"ev-{n}", "uid": f"ev-{c.pk}-{n}", "namespace": "bench", "resourceVersion": str(version)},
                "type": "Normal", "reason": reason, "message": f"{reason} pod", "involvedObject": {"kind": "Pod", "name": f"web-{n}"},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1}

    # The starting inventory (written the same way, not timed).
    for c in clusters:
        changes = [("nodes", "ADDED", node(c, n, rv(), "2026-01-01T00:00:00Z")) for n in range(args.nodes)]
        changes += [("deployments", "ADDED", deployment(args.pods, rv()))]
        changes += [("pods", "ADDED", pod(c, p, rv(), "Running")) for p in range(args.pods)]
        for change in changes:
            pool.submit(c.pk, watcher.Change(watches[c.pk], *change))
    pool.drain(timeout=3600)
    print(f"{args.clusters} clusters x ({args.nodes} nodes, {args.pods} pods, a Deployment); a round: in every cluster one pod "
          f"deleted and replaced (pod DELETED, ADDED, MODIFIED twice), the Deployment's status twice, 3 events, then the "
          f"summary, the announcement and the watch state the loop queues", flush=True)
    for round_ in range(args.rounds):
        gone, new = round_, args.pods + round_
        started = time.perf_counter()
        # In three waves, as they come (each cluster's wave written in one transaction, or fewer).
        waves = [[] for _ in range(3)]
        for c in clusters:
            watch = watches[c.pk]
            waves[0] += [(watch, ("pods", "DELETED", pod(c, gone, rv(), "Running"))), (watch, ("deployments", "MODIFIED", deployment(args.pods - 1, rv()))),
                         (watch, ("pods", "ADDED", pod(c, new, rv(), "Pending"))), (watch, ("events", "ADDED", event(c, new, "SuccessfulCreate", rv())))]
            waves[1] += [(watch, ("pods", "MODIFIED", pod(c, new, rv(), "Pending"))), (watch, ("events", "ADDED", event(c, new, "Scheduled", rv())))]
            waves[2] += [(watch, ("pods", "MODIFIED", pod(c, new, rv(), "Running"))), (watch, ("events", "ADDED", event(c, new, "Started", rv()))),
                         (watch, ("deployments", "MODIFIED", deployment(args.pods, rv())))]
        for number, wave in enumerate(waves):
            for watch, change in wave:
                pool.submit(watch.cluster_id, watcher.Change(watch, *change))
            for watch in watches.values():
                pool.submit(watch.cluster_id, lambda watch=watch: watch._announce_changes({"pods", "deployments", "events"}))
                if number == len(waves) - 1:
                    pool.submit(watch.cluster_id, watch._flush_summary)
                    pool.submit(watch.cluster_id, lambda watch=watch: watch._save({"pods": str(rv())}))
        pool.drain(timeout=3600)
        seconds = time.perf_counter() - started
        print(f"  round {round_ + 1}: {len(clusters):,} clusters in {seconds:.1f} s: {len(clusters) / seconds:,.0f} clusters/s "
              f"({9 * len(clusters) / seconds:,.0f} watch events/s)", flush=True)
    connection.close()


if __name__ == "__main__":
    main()
