"""`make run`'s supervisor (tools/run.py) starts a process that dies again, with back-off and a
line saying so, and still stops everything on Ctrl-C.  Dummy children prove the mechanics; one
real check proves a SIGKILLed cluster watcher comes back."""

import os
import signal
import sys
import time

import pytest

from tests.faults.portal_harness import REPO, Supervisor

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]


def dummy(commands):
    script = f"import sys; sys.path.insert(0, {str(REPO)!r}); from tools.run import supervise; sys.exit(supervise({commands!r}))"
    return Supervisor([sys.executable, "-c", script])


def test_a_killed_child_is_started_again_and_the_others_keep_running():
    sup = dummy({"alpha": SLEEPER + ["alpha"], "beta": SLEEPER + ["beta"]})
    try:
        alpha = sup.wait_for(lambda: sup.child("alpha"), what="alpha")
        beta = sup.wait_for(lambda: sup.child("beta"), what="beta")
        alpha.send_signal(signal.SIGKILL)
        sup.wait_for(lambda: sup.said("alpha exited with code -9"), what="the death line")
        again = sup.wait_for(lambda: (c := sup.child("alpha")) and c.pid != alpha.pid and c, what="a new alpha")
        assert again.is_running()
        assert sup.said("alpha restarted (pid")
        assert beta.is_running() and sup.child("beta").pid == beta.pid
        code, alive = sup.interrupt()
        assert code == 0 and not alive  # Ctrl-C still stops everything
    finally:
        sup.kill()


def test_a_child_that_keeps_dying_is_restarted_with_growing_back_off():
    sup = dummy({"crash": CRASHER, "steady": SLEEPER + ["steady"]})
    try:
        sup.wait_for(lambda: len(sup.said("crash exited with code 3")) >= 3, timeout=20, what="three crashes")
        delays = [line.split("restarting it in ")[1].split("s")[0] for line in sup.said("crash exited")]
        assert delays[:3] == ["1", "2", "4"]
        assert sup.child("steady").is_running() and sup.proc.poll() is None
        code, alive = sup.interrupt()
        assert code == 0 and not alive
    finally:
        sup.kill()


@pytest.mark.django_db(transaction=True)
def test_a_sigkilled_watcher_of_make_run_comes_back(settings):
    db = settings.DATABASES["default"]
    env = dict(os.environ, PORTAL_DATABASE_URL=f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}")
    sup = Supervisor([sys.executable, "tools/run.py", "watch"], env=env)
    try:
        watcher = sup.wait_for(lambda: sup.child("watch_clusters"), what="the watcher")
        time.sleep(2)  # let it start for real
        assert watcher.is_running()
        watcher.send_signal(signal.SIGKILL)
        sup.wait_for(lambda: sup.said("watch exited with code -9"), what="the death line")
        again = sup.wait_for(lambda: (c := sup.child("watch_clusters")) and c.pid != watcher.pid and c, what="a new watcher")
        time.sleep(2)
        assert again.is_running(), "\n".join(sup.lines[-20:])
        assert len(sup.said("watch exited")) == 1, "\n".join(sup.lines[-20:])  # it stays up this time
        assert sup.proc.poll() is None
        code, alive = sup.interrupt()
        assert code == 0 and not alive
    finally:
        sup.kill()


def test_ctrl_c_stops_the_private_redis_make_run_started():
    """`make run` names the services it started in CORRAL_RUN_STOPS; Ctrl-C stops them after the
    processes (their data stays under CORRAL_VAR_DIR)."""
    import shutil

    from tools import services

    var = services.default_var_dir() / f"test-run-stops-{os.getpid()}"
    var.mkdir(parents=True, exist_ok=True)
    try:
        url = services.ensure_redis(var)
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert services.port_accepts(port)
        script = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from tools.run import supervise_then_stop; "
                  f"sys.exit(supervise_then_stop({{'alpha': {SLEEPER + ['alpha']!r}}}, ['redis']))")
        sup = Supervisor([sys.executable, "-c", script], env=dict(os.environ, CORRAL_VAR_DIR=str(var)))
        try:
            sup.wait_for(lambda: sup.child("alpha"), what="alpha")
            code, alive = sup.interrupt()
            assert code == 0 and not alive
            assert sup.wait_for(lambda: sup.said("redis stopped"), what="the stop line")
            assert not services.port_accepts(port)
        finally:
            sup.kill()
    finally:
        services.stop_all(var)
        shutil.rmtree(var, ignore_errors=True)


def test_sandboxes_live_under_corral_var_dir(tmp_path, monkeypatch):
    """`manage.py sandbox` and the sandbox driver keep sandboxes under $CORRAL_VAR_DIR."""
    from clusters.sandbox import default_root

    monkeypatch.delenv("CORRAL_SANDBOX_ROOT", raising=False)
    monkeypatch.setenv("CORRAL_VAR_DIR", str(tmp_path))
    assert default_root() == tmp_path / "sandboxes"
    monkeypatch.setenv("CORRAL_SANDBOX_ROOT", str(tmp_path / "elsewhere"))
    assert default_root() == tmp_path / "elsewhere"
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_SANDBOX_ROOT"} | {"CORRAL_VAR_DIR": str(tmp_path / "v")}
    import subprocess

    # A stopped sandbox's state file under the var dir: the command lists it (and nothing else).
    (tmp_path / "v" / "sandboxes" / "kept-here").mkdir(parents=True)
    (tmp_path / "v" / "sandboxes" / "kept-here" / "sandbox.json").write_text('{"components": {}, "ports": {"kube-apiserver": 1}, "nodes": 0}')
    listed = subprocess.run([sys.executable, "manage.py", "sandbox", "list"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "kept-here" in listed.stdout
