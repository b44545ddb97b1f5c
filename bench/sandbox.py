"""How much a sandbox costs: start-up time and resident memory of all its processes.

    python bench/sandbox.py                      # 3-node sandbox, 3 at once, and 1,000 nodes + 10,000 pods
    python bench/sandbox.py --skip-large         # only the small ones
    python bench/sandbox.py --nodes 1000 --pods 10000

Needs `make kube-tools`. Sandboxes live under a temporary root and are always stopped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusters.sandbox import Sandbox, SandboxError  # noqa: E402

MiB = 2**20


def mib(n: int) -> str:
    return f"{n / MiB:,.0f} MiB"


def memory_lines(sandbox: Sandbox) -> list[str]:
    status = sandbox.status()
    parts = ", ".join(
        f"{name} {mib(c['rss_bytes'])}" for name, c in status["components"].items()
    )
    return [f"  RSS total       {mib(status['rss_bytes'])}", f"    ({parts})"]


def idle_cpu_percent(sandbox: Sandbox, seconds: float = 30) -> float:
    """CPU used by all processes of an idle sandbox, in percent of one core."""
    import psutil

    pids = [c["pid"] for c in sandbox.status()["components"].values()]
    procs = [psutil.Process(pid) for pid in pids]
    before = sum(sum(p.cpu_times()[:2]) for p in procs)
    time.sleep(seconds)
    after = sum(sum(p.cpu_times()[:2]) for p in procs)
    return (after - before) / seconds * 100


def timed_up(sandbox: Sandbox, nodes: int) -> float:
    started = time.monotonic()
    sandbox.up(nodes=nodes, timeout=600)
    return time.monotonic() - started


def bench_small(root: Path) -> None:
    sandbox = Sandbox("bench-3", root)
    seconds = timed_up(sandbox, 3)
    try:
        time.sleep(10)  # let controllers settle before measuring memory
        print("3-node sandbox")
        print(f"  start-up        {seconds:.1f} s (to healthy control plane + 3 Ready nodes)")
        for line in memory_lines(sandbox):
            print(line)
        print(f"  idle CPU        {idle_cpu_percent(sandbox):.1f} % of one core (30 s sample)")
    finally:
        sandbox.down()


def bench_several(root: Path, count: int) -> None:
    sandboxes = [Sandbox(f"bench-many-{i}", root) for i in range(count)]
    started = time.monotonic()
    try:
        for sandbox in sandboxes:
            sandbox.up(nodes=3, timeout=600)
        seconds = time.monotonic() - started
        time.sleep(10)
        total = sum(s.rss_bytes() for s in sandboxes)
        print(f"{count} x 3-node sandboxes side by side")
        print(f"  start-up        {seconds:.1f} s for all, one after another")
        print(f"  RSS total       {mib(total)} ({mib(total // count)} each)")
    finally:
        for sandbox in sandboxes:
            try:
                sandbox.down()
            except SandboxError:
                pass


def ready_replicas(sandbox: Sandbox, namespace: str) -> int:
    # Deployment status is cheap to read; listing 10,000 pods every poll would skew the figures.
    deployments = sandbox.api().get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
    return sum(d.get("status", {}).get("readyReplicas", 0) for d in deployments)


def running_pods(sandbox: Sandbox, namespace: str) -> int:
    """Count Running pods page by page (selectors disable remainingItemCount)."""
    api, count, token = sandbox.api(), 0, ""
    while True:
        page = api.get(
            f"/api/v1/namespaces/{namespace}/pods?fieldSelector=status.phase%3DRunning&limit=2000&continue={quote(token)}"
        )
        count += len(page["items"])
        token = page["metadata"].get("continue")
        if not token:
            return count


def bench_large(root: Path, nodes: int, pods: int, deployments: int) -> None:
    sandbox = Sandbox("bench-large", root)
    seconds = timed_up(sandbox, nodes)
    try:
        print(f"{nodes:,}-node sandbox")
        print(f"  start-up        {seconds:.1f} s (to healthy control plane + {nodes:,} Ready nodes)")
        for line in memory_lines(sandbox):
            print(line)

        api = sandbox.api()
        namespace = "bench"
        api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        per_deployment = pods // deployments
        started = time.monotonic()
        for index in range(deployments):
            name = f"web-{index}"
            api.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {
                    "replicas": per_deployment,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{
                            "name": "web", "image": "nginx",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }]},
                    },
                },
            })
        target = per_deployment * deployments
        last_report = 0.0
        while (running := ready_replicas(sandbox, namespace)) < target:
            elapsed = time.monotonic() - started
            if elapsed > 1800:
                raise SystemExit(f"only {running:,} of {target:,} pods Running after 30 minutes")
            if elapsed - last_report >= 15:
                print(f"    ... {running:,} / {target:,} pods Ready after {elapsed:.0f} s", flush=True)
                last_report = elapsed
            time.sleep(2)
        seconds = time.monotonic() - started
        running = running_pods(sandbox, namespace)
        print(f"{nodes:,} nodes + {target:,} pods ({running:,} pods in phase Running, counted)")
        print(f"  pods Running    {seconds:.1f} s after creating {deployments} Deployments "
              f"({target / seconds:,.0f} pods/s through ReplicaSet controller, scheduler and kwok)")
        time.sleep(30)
        for line in memory_lines(sandbox):
            print(line)
    finally:
        sandbox.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--deployments", type=int, default=10)
    parser.add_argument("--several", type=int, default=3, help="small sandboxes to run side by side")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--only-large", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        root = Path(tmp)
        try:
            if not args.only_large:
                bench_small(root)
                if args.several > 1:
                    bench_several(root, args.several)
            if not args.skip_large:
                bench_large(root, args.nodes, args.pods, args.deployments)
        except SandboxError as exc:
            raise SystemExit(f"bench failed: {exc}") from None


if __name__ == "__main__":
    main()
