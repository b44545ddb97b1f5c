"""A Celery worker's pool process SIGKILLed in the middle of a sync: the task is redelivered, waits
for the dead run's locks to expire (seconds, not the old 15 minutes) and finishes the sync; the
operation ends succeeded, nothing is left running, and the inventory equals what the cluster lists.

Real processes throughout: a prefork worker on the suite's Redis and the test database, and the
session sandbox, whose kube-apiserver is paused (SIGSTOP) so the sync is caught mid-read."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from clusters import tasks
from clusters.models import Cluster, Namespace, Node
from portal import operations
from portal.celery import app
from portal.models import Operation

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def worker(settings, tmp_path):
    db = settings.DATABASES["default"]
    env = dict(os.environ, PORTAL_DATABASE_URL=f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               PORTAL_KUBE_TIMEOUT_SECONDS="120", PORTAL_DB_CONN_MAX_AGE="0")
    log = open(tmp_path / "worker.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool=prefork", "--concurrency=1",
                             "--loglevel=INFO", "-n", f"faults-{os.getpid()}@%h"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    app.conf.task_always_eager = False
    proc.log_path = tmp_path / "worker.log"
    try:
        wait_for(lambda: "ready." in proc.log_path.read_text(), 60, "the worker")
        yield proc
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()
        log.close()


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


def test_a_sync_whose_pool_process_is_killed_is_redelivered_and_finishes(sandbox, worker, paused_apiserver):
    cluster = Cluster.objects.create(
        name="killed-mid-sync", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem,
                     "client_key": sandbox.admin_key_pem},
    )
    with paused_apiserver:
        op = operations.start("sync", tasks.sync_cluster, cluster=cluster, args=(cluster.pk,))
        wait_for(lambda: any("reading the inventory" in line["message"] for line in Operation.objects.get(pk=op.pk).log),
                 60, "the sync to start reading")
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
    assert not any("already running" in m for m in messages)
    assert not Operation.objects.filter(status__in=["pending", "running"]).exists()

    api = sandbox.api()
    namespaces = {o["metadata"]["uid"]: o["metadata"]["resourceVersion"] for o in api.get("/api/v1/namespaces")["items"]}
    assert dict(Namespace.objects.filter(cluster=cluster).values_list("uid", "resource_version")) == namespaces
    # kwok renews node heartbeats, so node resourceVersions move on between the list and now
    nodes = {o["metadata"]["uid"] for o in api.get("/api/v1/nodes")["items"]}
    assert set(Node.objects.filter(cluster=cluster).values_list("uid", flat=True)) == nodes
