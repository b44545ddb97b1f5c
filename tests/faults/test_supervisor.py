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
