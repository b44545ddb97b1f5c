"""What `make run`'s stop says and leaves: sandbox clusters outlive it (they are clusters, and Corral
cannot start a stopped one again), and it names the ones still running under $CORRAL_VAR_DIR."""

import json
import subprocess
import time

import psutil

from clusters.sandbox.processes import start_ticks
from tools import run


def test_stop_names_the_sandboxes_left_running_under_corral_var_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CORRAL_SANDBOX_ROOT", raising=False)
    monkeypatch.setenv("CORRAL_VAR_DIR", str(tmp_path))
    # A sandbox whose (stand-in) component runs, and one whose processes are gone.
    proc = subprocess.Popen(["sleep", "60"])
    try:
        # Until the child has exec'd, its command line is still pytest's (CI, under load, read it so).
        deadline = time.monotonic() + 10
        while psutil.Process(proc.pid).cmdline()[:1] != ["sleep"] and time.monotonic() < deadline:
            time.sleep(0.01)
        for name, pid in (("still-up", proc.pid), ("long-gone", 999_999)):
            (tmp_path / "sandboxes" / name).mkdir(parents=True)
            state = {"components": {"etcd": {"pid": pid, "argv": ["sleep", "60"], "start_ticks": start_ticks(proc.pid)}},
                     "ports": {"kube-apiserver": 1}, "nodes": 0}
            (tmp_path / "sandboxes" / name / "sandbox.json").write_text(json.dumps(state))
        run.stop_services([])
        said = capsys.readouterr().out
        assert "sandbox clusters left running" in said and "still-up" in said and "long-gone" not in said
        assert str(tmp_path / "sandboxes") in said
    finally:
        proc.kill()
        proc.wait()
    run.stop_services([])
    assert "left running" not in capsys.readouterr().out
