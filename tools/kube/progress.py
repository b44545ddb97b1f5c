"""`make kube-tools` with progress: runs tools/kube/build.sh then tools/kube/addons.sh (unchanged,
so their cache keys are too) and turns their output into something a person can follow: which
binary is building, N of M, the elapsed time, a line every 30 s while the Go compiler is silent,
and a count of modules instead of hundreds of `go: downloading` lines.  Everything the scripts say
goes to a log ($CORRAL_VAR_DIR/kube-tools.log, default var/), whose tail is shown if a build fails.

    python3 tools/kube/progress.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEARTBEAT_SECONDS = float(os.environ.get("CORRAL_KUBE_TOOLS_HEARTBEAT_SECONDS", "30"))
BUILDING = re.compile(r"^kube-tools: building (\S+) \(")
BUILT = re.compile(r"^kube-tools: built (\S+) in")
DOWNLOADING = re.compile(r"^go: downloading (\S+) (\S+)")


def bash_array(script: Path, name: str) -> list[str]:
    """The words of ``name=(...)`` in ``script`` (the lists of what each script builds)."""
    match = re.search(rf"^{name}=\(([^)]*)\)", script.read_text(), re.M)
    return match.group(1).split() if match else []


def missing_binaries() -> list[str]:
    """What build.sh and addons.sh will build: the binaries not in their cache directories yet."""
    build, addons = HERE / "build.sh", HERE / "addons.sh"
    missing = []
    bin_dir = Path(subprocess.run(["bash", str(build), "--print-bin-dir"], capture_output=True, text=True, check=True).stdout.strip())
    missing += [name for name in bash_array(build, "binaries") if not os.access(bin_dir / name, os.X_OK)]
    for name in bash_array(addons, "names"):
        path = Path(subprocess.run(["bash", str(addons), "--print-bin", name], capture_output=True, text=True, check=True).stdout.strip())
        if not os.access(path, os.X_OK):
            missing.append(name)
    return missing


class Progress:
    def __init__(self, total: int, log, out=sys.stdout):
        self.total, self.log, self.out = total, log, out
        self.started = time.monotonic()
        self.done = 0
        self.current: str | None = None
        self.current_since = self.started
        self.downloads = 0
        self.lock = threading.Lock()

    def elapsed(self, since=None) -> str:
        seconds = int(time.monotonic() - (since or self.started))
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"

    def say(self, text: str) -> None:
        with self.lock:
            print(f"kube-tools [{self.elapsed()}] {text}", file=self.out, flush=True)

    def line(self, text: str) -> None:
        self.log.write(text + "\n")
        self.log.flush()
        if m := DOWNLOADING.match(text):
            self.downloads += 1
            if self.downloads == 1 or self.downloads % 50 == 0:
                self.say(f"{self.position()} {self.current or 'modules'}: downloading modules ({self.downloads} so far, now {m.group(1)})")
            return
        if m := BUILDING.match(text):
            self.current, self.current_since = m.group(1), time.monotonic()
            self.say(f"{self.done + 1} of {self.total}: building {m.group(1)}")
            return
        if m := BUILT.match(text):
            self.done += 1
            self.say(f"{self.done} of {self.total}: built {m.group(1)} in {self.elapsed(self.current_since)}")
            self.current = None
            return
        self.say(text.removeprefix("kube-tools: "))

    def position(self) -> str:
        return f"{min(self.done + 1, self.total)} of {self.total}:" if self.total else ""

    def heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            if self.current:
                extra = f", {self.downloads} modules downloaded" if self.downloads else ""
                self.say(f"{self.position()} still building {self.current} ({self.elapsed(self.current_since)} on it{extra})")


def main() -> int:
    var = Path(os.environ.get("CORRAL_VAR_DIR") or HERE.parents[1] / "var")
    var.mkdir(parents=True, exist_ok=True)
    log_path = var / "kube-tools.log"
    missing = missing_binaries()
    with open(log_path, "w") as log:
        progress = Progress(len(missing), log)
        if missing:
            progress.say(f"{len(missing)} to build: {', '.join(missing)} (cold builds take many minutes; full output in {log_path})")
        stop = threading.Event()
        threading.Thread(target=progress.heartbeat, args=(stop,), daemon=True).start()
        try:
            for script in ("build.sh", "addons.sh"):
                proc = subprocess.Popen(["bash", str(HERE / script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for raw in proc.stdout:
                    progress.line(raw.rstrip("\n"))
                if proc.wait() != 0:
                    stop.set()
                    tail = log_path.read_text().splitlines()[-40:]
                    print("\n".join(tail), file=sys.stderr)
                    progress.say(f"FAILED in {script} (exit {proc.returncode}); the whole output is in {log_path}")
                    return proc.returncode
        finally:
            stop.set()
        progress.say(f"all {len(missing)} built" if missing else "everything up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
