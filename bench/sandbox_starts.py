"""How dependable `Sandbox.up` is: many starts, side by side and under CPU load, and the success rate.

    python bench/sandbox_starts.py                          # 10 starts, 3 at a time, 2 busy loops
    python bench/sandbox_starts.py --starts 20 --parallel 4 --burners 4
    python bench/sandbox_starts.py --cli --cold             # `manage.py sandbox up`, binaries not cached
    python bench/sandbox_starts.py --keep /tmp/failed       # copy the logs of failed starts there

Each start is `up(nodes=3)` then `down()` under a temporary root. The busy loops are processes this
script starts and stops itself. Needs `make kube-tools`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusters.sandbox import Sandbox, SandboxError, kube_bin_dir  # noqa: E402
from clusters.sandbox.binaries import REPO_ROOT  # noqa: E402

BUSY_LOOP = "while True: pass"


def up(sandbox: Sandbox, nodes: int, cli: bool) -> None:
    if not cli:
        sandbox.up(nodes=nodes)
        return
    result = subprocess.run(
        [sys.executable, "manage.py", "sandbox", "--root", str(sandbox.root), "up", sandbox.name, "--nodes", str(nodes)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )
    if result.returncode:
        raise SandboxError(result.stderr.strip().removeprefix("CommandError: "))


def evict_binaries() -> None:
    """Drop the control-plane binaries from the page cache, as other work on a busy machine does:
    exec() then has to read them from disk, which widens the window right after Popen returns."""
    for path in kube_bin_dir().iterdir():
        with open(path, "rb") as binary:
            os.posix_fadvise(binary.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def start_and_stop(
    root: Path, index: int, nodes: int, cli: bool, cold: bool, keep: Path | None
) -> tuple[bool, float, str]:
    sandbox = Sandbox(f"start-{index}", root)
    if cold:
        evict_binaries()
    started = time.monotonic()
    try:
        up(sandbox, nodes, cli)
    except SandboxError as exc:
        seconds = time.monotonic() - started
        if keep and (sandbox.dir / "logs").is_dir():
            shutil.copytree(sandbox.dir / "logs", keep / sandbox.name, dirs_exist_ok=True)
        return False, seconds, str(exc)
    seconds = time.monotonic() - started
    try:
        sandbox.down()
    except SandboxError as exc:
        return False, seconds, f"down failed: {exc}"
    return True, seconds, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=3, help="starts running at the same time")
    parser.add_argument("--burners", type=int, default=2, help="busy-loop processes while the starts run")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--cli", action="store_true", help="start each with `manage.py sandbox up` in its own process")
    parser.add_argument("--cold", action="store_true", help="drop the binaries from the page cache before each start")
    parser.add_argument("--keep", type=Path, help="copy the logs of failed starts into this directory")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)

    burners = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.burners)]
    lock, results = threading.Lock(), []
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="corral-starts-") as tmp, ThreadPoolExecutor(args.parallel) as pool:
            def run(index: int) -> None:
                ok, seconds, error = start_and_stop(Path(tmp), index, args.nodes, args.cli, args.cold, args.keep)
                with lock:
                    results.append((ok, seconds))
                    first_line = error.splitlines()[0] if error else ""
                    print(f"start {index:3d}: {'ok    ' if ok else 'FAILED'} {seconds:5.1f} s  {first_line}", flush=True)
                    if error:
                        print("    " + "\n    ".join(error.splitlines()[1:]), flush=True)

            list(pool.map(run, range(args.starts)))
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    wall = time.monotonic() - began
    ok = [seconds for success, seconds in results if success]
    print(
        f"{len(ok)} of {len(results)} starts succeeded ({100 * len(ok) / max(len(results), 1):.0f} %), "
        f"{args.parallel} at a time, {args.burners} busy loops on {_cpus()} CPUs; {wall:.0f} s in all"
    )
    if ok:
        print(f"start-up: median {statistics.median(ok):.1f} s, slowest {max(ok):.1f} s")
    sys.exit(0 if len(ok) == len(results) else 1)


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
