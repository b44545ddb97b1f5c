"""How many clusters one watcher process can follow: N clusters registered against one sandbox
(each change in the sandbox is then N changes for Corral), measuring the watcher's threads and
memory once every cluster is listed (and its peak while listing), and how long a pod deletion takes to reach all N inventories.

    python bench/watcher.py --clusters 100
"""

import argparse
import tempfile
import threading
import time
from pathlib import Path

import benchdb


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--pods", type=int, default=20)
    args = parser.parse_args()

    benchdb.setup("corral_bench_watcher")
    import psutil

    from clusters.models import Cluster, Pod
    from clusters.sandbox import Sandbox
    from clusters.watcher import Supervisor, writers

    with tempfile.TemporaryDirectory(prefix="corral-bench-watch-") as tmp:
        sandbox = Sandbox("bench-watch", Path(tmp))
        sandbox.up(nodes=10, timeout=300)
        try:
            sandbox.kubectl("create", "deployment", "web", "--image=nginx", f"--replicas={args.pods}")
            deadline = time.monotonic() + 120
            while sandbox.kubectl("get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}").stdout.strip() != str(args.pods):
                assert time.monotonic() < deadline, "pods never became ready"
                time.sleep(1)
            creds = {"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem}
            Cluster.objects.bulk_create([Cluster(name=f"w-{i:04d}", slug=f"w-{i:04d}", driver="imported", state="active", credentials=creds)
                                         for i in range(args.clusters)])
            process = psutil.Process()
            base_threads, base_rss = process.num_threads(), process.memory_info().rss
            supervisor = Supervisor(poll_seconds=2)
            started = time.monotonic()
            with benchdb.PeakRSS() as peak:
                threading.Thread(target=supervisor.run, daemon=True).start()
                total = args.clusters * args.pods
                while Pod.objects.filter(phase="Running").count() < total:
                    assert time.monotonic() - started < 900, "the initial lists never finished"
                    time.sleep(1)
                time.sleep(5)  # let every watch connect
            listed = time.monotonic() - started
            threads, rss = process.num_threads() - base_threads, process.memory_info().rss - base_rss
            print(f"{args.clusters} clusters x {args.pods} pods followed by one watcher process")
            print(f"  initial lists   {listed:.1f} s")
            print(f"  threads         {threads:,} ({threads / args.clusters:.1f} per cluster)")
            print(f"  memory          {rss / 2**20:,.0f} MiB more than before ({rss / args.clusters / 2**20:.1f} MiB per cluster)")
            print(f"  peak memory     {peak.max / 2**20:,.0f} MiB resident while listing, {(peak.max - base_rss) / 2**20:,.0f} MiB more than before")

            victim = Pod.objects.filter(phase="Running").values_list("name", flat=True).first()
            started = time.monotonic()
            sandbox.kubectl("delete", "pod", victim, "--wait=false")
            while Pod.objects.filter(name=victim).exists():
                assert time.monotonic() - started < 120, "the deletion never reached every cluster"
                time.sleep(0.05)
            print(f"  one pod deleted: gone from all {args.clusters} inventories after {time.monotonic() - started:.2f} s")
            supervisor.stop()
            for watch in supervisor.watches.values():
                watch.stop()
            for watch in supervisor.watches.values():
                watch.stop(wait=5)
            writers().drain()
        finally:
            sandbox.down()


if __name__ == "__main__":
    main()
