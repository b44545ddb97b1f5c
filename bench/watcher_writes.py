"""The watcher's write path on its own (PostgreSQL, Redis): watch events queued to the real writer
threads (``clusters.watcher.Writers``) as the event loop queues them, without API servers, so the
figure is the database side alone.  A round is, for each of N clusters, a heartbeat of each of its
nodes (nothing visible changes) and a status change of a share of its pods, with the live events
sent to Redis.  Printed: events written per second and queries per event, with each cluster's
changes written together (the watcher's way) and one change per transaction (``--batch 1``).

    python bench/watcher_writes.py                      # 200 clusters x (10 nodes, 100 pods)
    python bench/watcher_writes.py --clusters 50 --rounds 3
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

    print(f"{args.clusters} clusters x ({args.nodes} nodes, {args.pods} pods); a round: every node's heartbeat and "
          f"{args.changed} pods' status per cluster; the first round writes every pod")
    run(watcher.BATCH, "batched (the watcher's way)", first=True)
    run(1, "one change per transaction")
    print(f"database: {Node.objects.count():,} nodes, {Pod.objects.count():,} pods")


if __name__ == "__main__":
    main()
