"""`make kube-tools` shows progress (tools/kube/progress.py around the unchanged build scripts).

The Go toolchain is replaced by a script that prints what `go build` prints (a stream of
`go: downloading` lines), waits and writes an executable: what is tested is the display, and a
real cold build takes over ten minutes (CI runs the real one in `make kube-tools`)."""

import os
import subprocess
import sys
from pathlib import Path

from clusters.sandbox.binaries import ADDONS, BINARIES

REPO = Path(__file__).resolve().parents[1]
ALL = BINARIES + ADDONS  # in the order they are built

FAKE_GO = """#!/bin/bash
if [ "$1" = env ]; then echo go1.99-fake; exit 0; fi
if [ "$1" = list ]; then  # `go list -m -f {{.Dir}} MODULE`: where Cluster API's config/ folders are copied from
  d="$(dirname "$0")/modules"
  for p in core bootstrap/kubeadm controlplane/kubeadm infrastructure/docker; do mkdir -p "$d/$p/config/crd" "$d/$p/config/webhook"; done
  echo "$d"; exit 0
fi
out=""
while [ $# -gt 0 ]; do if [ "$1" = -o ]; then out="$2"; shift; fi; shift; done
for i in $(seq 1 60); do echo "go: downloading example.com/module$i v1.0.$i" >&2; done
sleep "${FAKE_GO_SECONDS:-0}"
printf '#!/bin/sh\\n' > "$out"; chmod +x "$out"
"""


def run(tmp_path, seconds="0"):
    env = {**os.environ, "GO": str(tmp_path / "go"), "CORRAL_KUBE_CACHE": str(tmp_path / "cache"),
           "CORRAL_VAR_DIR": str(tmp_path / "var"), "FAKE_GO_SECONDS": seconds, "CORRAL_KUBE_TOOLS_HEARTBEAT_SECONDS": "0.2"}
    return subprocess.run([sys.executable, "tools/kube/progress.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_kube_tools_says_which_binary_n_of_m_and_how_long(tmp_path):
    (tmp_path / "go").write_text(FAKE_GO)
    (tmp_path / "go").chmod(0o755)
    first = run(tmp_path, seconds="0.1")
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    n = len(ALL)
    assert f"{n} to build: {', '.join(ALL)}" in out
    assert f"1 of {n}: building {ALL[0]}" in out and f"{n} of {n}: built {ALL[-1]} in" in out
    assert "go: downloading" not in out  # summarised ...
    assert "downloading modules (50 so far" in out
    log = (tmp_path / "var" / "kube-tools.log").read_text()
    assert log.count("go: downloading") == len(ALL) * 60  # ... and all kept in the log, under CORRAL_VAR_DIR
    assert all(line.startswith("kube-tools [") for line in out.splitlines())  # each with the elapsed time

    again = run(tmp_path)
    assert again.returncode == 0 and "everything up to date" in again.stdout and "building" not in again.stdout


def test_a_silent_compile_still_shows_it_is_alive_and_a_failure_shows_the_log(tmp_path):
    (tmp_path / "go").write_text(FAKE_GO)
    (tmp_path / "go").chmod(0o755)
    slow = run(tmp_path, seconds="0.5")
    assert "still building etcd" in slow.stdout

    (tmp_path / "go").write_text('#!/bin/bash\nif [ "$1" = env ]; then echo go1.98-fake; exit 0; fi\necho "compile: boom" >&2; exit 3\n')
    failed = run(tmp_path)
    assert failed.returncode != 0
    assert "FAILED in build.sh" in failed.stdout and "compile: boom" in failed.stderr
