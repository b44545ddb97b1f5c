"""A Celery worker SIGKILLed in the middle of a sync.

- Its pool process: the task is redelivered, waits for the dead run's locks to expire (seconds,
  not the old 15 minutes) and finishes the sync.
- The whole worker (main process and pool, as make run's supervisor leaves it): the message waits
  unacknowledged for the visibility timeout, so the sweep fails the operation with the reason,
  and the next sync, on a new worker, runs at once instead of "already running".

Each ends with nothing left running and the inventory equal to what the cluster lists.

Real processes throughout: a prefork worker on the suite's Redis and the test database, and the
session sandbox, whose kube-apiserver is paused (SIGSTOP) so the sync is caught mid-read."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from clusters import tasks
from clusters.models import Namespace, Node
from portal import operations
from portal.celery import app
from portal.locks import is_held
from portal.models import Operation
from tests.kube_fixtures import imported_cluster
from tests.waiting import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def start_worker(settings, tmp_path):
    db = settings.DATABASES["default"]
    env = dict(os.environ, PORTAL_DATABASE_URL=f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               PORTAL_KUBE_TIMEOUT_SECONDS="120", PORTAL_DB_CONN_MAX_AGE="0")
    app.conf.task_always_eager = False
    started = []

    def start():
        log_path = tmp_path / f"worker-{len(started)}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool=prefork", "--concurrency=1",
                                     "--loglevel=INFO", "-n", f"faults-{os.getpid()}-{len(started)}@%h"],
                                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = log_path
        started.append(proc)
        wait_for(lambda: "ready." in log_path.read_text(), 60, "the worker")
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
        proc.wait()


@pytest.fixture
def worker(start_worker):
    return start_worker()


@pytest.fixture
def paused_apiserver(sandbox):
    pid = sandbox._state()["components"]["kube-apiserver"]["pid"]
    apiserver = psutil.Process(pid)

    class Pause:
        def __enter__(self):
            apiserver.suspend()

        def __exit__(self, *exc):
            apiserver.resume()

    yield Pause()
    apiserver.resume()


def start_sync_and_wait_until_it_reads(cluster):
    op = operations.start("sync", tasks.sync_cluster, cluster=cluster, args=(cluster.pk,))
    wait_for(lambda: any("reading the inventory" in line["message"] for line in Operation.objects.get(pk=op.pk).log),
             60, "the sync to start reading")
    return op


def assert_inventory_equals_the_cluster(sandbox, cluster):
    api = sandbox.api()
    namespaces = {o["metadata"]["uid"]: o["metadata"]["resourceVersion"] for o in api.get("/api/v1/namespaces")["items"]}
    assert dict(Namespace.objects.filter(cluster=cluster).values_list("uid", "resource_version")) == namespaces
    # kwok renews node heartbeats, so node resourceVersions move on between the list and now
    nodes = {o["metadata"]["uid"] for o in api.get("/api/v1/nodes")["items"]}
    assert set(Node.objects.filter(cluster=cluster).values_list("uid", flat=True)) == nodes


def test_a_sync_whose_pool_process_is_killed_is_redelivered_and_finishes(sandbox, worker, paused_apiserver):
    cluster = imported_cluster(sandbox, "killed-mid-sync")
    with paused_apiserver:
        op = start_sync_and_wait_until_it_reads(cluster)
        children = psutil.Process(worker.pid).children()
        assert len(children) == 1
        children[0].kill()
        killed = time.monotonic()
    done = wait_for(lambda: Operation.objects.filter(pk=op.pk, status__in=["succeeded", "failed"]).first(), 120,
                    "the redelivered sync to finish")
    log = worker.log_path.read_text()
    assert done.status == "succeeded", f"{done.error}\n{log[-3000:]}"
    assert time.monotonic() - killed < 90  # the dead run's locks expired in seconds
    messages = [line["message"] for line in done.log]
    assert "started again: the worker that ran it was lost" in messages
    assert not any(m.startswith("failed") for m in messages)  # never "a sync of this cluster is already running"
    assert not Operation.objects.filter(status__in=["pending", "running"]).exists()
    assert_inventory_equals_the_cluster(sandbox, cluster)


def test_a_sync_whose_whole_worker_is_killed_is_failed_and_the_next_sync_runs(sandbox, start_worker, paused_apiserver):
    cluster = imported_cluster(sandbox, "worker-killed")
    worker = start_worker()
    with paused_apiserver:
        op = start_sync_and_wait_until_it_reads(cluster)
        os.killpg(worker.pid, signal.SIGKILL)  # the main process and its pool
        worker.wait()
    wait_for(lambda: not is_held(operations.liveness_lock_name(op.pk)), 40, "the dead run's lock to expire")
    assert [lost.pk for lost in operations.fail_lost(grace=0)] == [op.pk]
    op.refresh_from_db()
    assert op.status == "failed" and "the worker running it stopped" in op.error

    start_worker()
    again = operations.start("sync", tasks.sync_cluster, cluster=cluster, args=(cluster.pk,))
    done = wait_for(lambda: Operation.objects.filter(pk=again.pk, status__in=["succeeded", "failed"]).first(), 60,
                    "the next sync to finish")
    assert done.status == "succeeded", done.error
    assert not any("waiting for the sync" in line["message"] for line in done.log)  # its lock had freed
    assert not Operation.objects.filter(status__in=["pending", "running"]).exists()
    assert_inventory_equals_the_cluster(sandbox, cluster)
