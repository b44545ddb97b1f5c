"""What the Cluster API test ground costs: `sandbox up --capi` time, clusters from the ClusterClass
`in-memory` until Available, and the controllers' resident memory and CPU.

    python bench/capi_ground.py                   # 1 cluster of 1 control plane + 3 workers
    python bench/capi_ground.py --clusters 5 --workers 3

Needs `make kube-tools`. The sandbox lives under a temporary root and is always stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from clusters.sandbox import Sandbox, capi  # noqa: E402

MiB = 2**20


def cluster(name: str, workers: int) -> dict:
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "clusterNetwork": {"services": {"cidrBlocks": ["10.128.0.0/12"]}, "pods": {"cidrBlocks": ["192.168.0.0/16"]},
                               "serviceDomain": "cluster.local"},
            "topology": {
                "classRef": {"name": capi.CLASS_NAME}, "version": "v1.36.3", "controlPlane": {"replicas": 1},
                "workers": {"machineDeployments": [{"class": "default-worker", "name": "md-0", "replicas": workers}]},
                "variables": [{"name": "machineStartupDuration", "value": "1s"}],
            },
        },
    }


def controllers(sandbox: Sandbox) -> dict[str, psutil.Process]:
    state = json.loads(capi.state_path(sandbox).read_text())
    return {provider: psutil.Process(entry["pid"]) for provider, entry in state["components"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=1)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="capi-bench-") as root:
        sandbox = Sandbox("capi-bench", Path(root))
        began = time.monotonic()
        sandbox.up(nodes=1, capi=True)
        print(f"sandbox up --capi       {time.monotonic() - began:6.1f} s")
        try:
            procs = controllers(sandbox)
            cpu_before = {p: proc.cpu_times() for p, proc in procs.items()}
            names = [f"bench-{i}" for i in range(args.clusters)]
            began = time.monotonic()
            sandbox.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(cluster(n, args.workers)) for n in names))
            pending, reached = set(names), {}
            while pending and time.monotonic() - began < args.timeout:
                items = sandbox.api().get("/apis/cluster.x-k8s.io/v1beta2/namespaces/default/clusters")["items"]
                for item in items:
                    conditions = {c["type"]: c["status"] for c in item.get("status", {}).get("conditions", [])}
                    name = item["metadata"]["name"]
                    for condition in ("ControlPlaneAvailable", "Available"):
                        if conditions.get(condition) == "True" and (name, condition) not in reached:
                            reached[name, condition] = time.monotonic() - began
                    if conditions.get("Available") == "True":
                        pending.discard(name)
                time.sleep(0.5)
            if pending:
                print(f"timed out after {args.timeout:.0f} s: {len(pending)} of {args.clusters} clusters not Available")
            for condition in ("ControlPlaneAvailable", "Available"):
                times = sorted(t for (_, c), t in reached.items() if c == condition)
                if times:
                    print(f"{condition:<23} first {times[0]:6.1f} s, last {times[-1]:6.1f} s "
                          f"({len(times)} of {args.clusters} clusters, 1 control plane + {args.workers} workers each)")
            print("controllers (RSS, CPU while provisioning):")
            total = 0
            for provider, proc in procs.items():
                rss = proc.memory_info().rss
                total += rss
                cpu = sum(proc.cpu_times()[:2]) - sum(cpu_before[provider][:2])
                print(f"  {provider:<26} {rss / MiB:6.0f} MiB  {cpu:6.1f} s CPU")
            print(f"  {'total':<26} {total / MiB:6.0f} MiB")
            status = sandbox.status()
            print(f"management sandbox total {status['rss_bytes'] / MiB:6.0f} MiB "
                  f"(kube-apiserver {status['components']['kube-apiserver']['rss_bytes'] / MiB:.0f} MiB)")
        finally:
            sandbox.down()


if __name__ == "__main__":
    main()
