"""Background work on a real Celery worker with the Redis broker: tasks are enqueued only after
commit, serialised as JSON, and write their progress to an Operation."""

import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import transaction

from clusters import tasks
from clusters.models import Cluster
from portal import operations
from portal.celery import app
from portal.models import Operation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker():
    app.conf.task_always_eager = False
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield


def wait_for(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_configuration_is_json_only_with_late_acks():
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_acks_late is True
    assert app.conf.task_time_limit > 0


def test_removal_runs_on_the_worker_after_commit(worker):
    cluster = Cluster.objects.create(name="gone", driver="imported", state="active")
    with transaction.atomic():
        op = operations.start("remove", tasks.remove_cluster, cluster=cluster, args=(cluster.pk,))
        time.sleep(0.5)  # a worker that got the task before commit would find no operation yet
        assert Operation.objects.get(pk=op.pk).status == "pending"
    done = wait_for(lambda: Operation.objects.filter(pk=op.pk, status="succeeded").first())
    assert done.progress == 100
    messages = [line["message"] for line in done.log]
    assert messages[0] == "started" and messages[-1] == "done"
    assert any("forgetting" in m for m in messages)
    assert not Cluster.objects.filter(pk=cluster.pk).exists()


def test_a_failing_provision_marks_operation_and_cluster(worker):
    cluster = Cluster.objects.create(name="broken", driver="sandbox", driver_config={"nodes": 0})
    op = operations.start("provision", tasks.provision_cluster, cluster=cluster, args=(cluster.pk,))
    failed = wait_for(lambda: Operation.objects.filter(pk=op.pk, status="failed").first())
    assert "from 1 to 100 (PORTAL_SANDBOX_MAX_NODES)" in failed.error
    cluster.refresh_from_db()
    assert cluster.state == "error" and "from 1 to 100" in cluster.last_error


def test_nothing_is_enqueued_when_the_transaction_rolls_back(worker):
    cluster = Cluster.objects.create(name="kept", driver="imported", state="active")
    try:
        with transaction.atomic():
            operations.start("remove", tasks.remove_cluster, cluster=cluster, args=(cluster.pk,))
            raise RuntimeError
    except RuntimeError:
        pass
    time.sleep(1.5)
    assert Cluster.objects.filter(pk=cluster.pk).exists()
    assert not Operation.objects.exists()


def test_periodic_checks_never_pile_up_for_a_cluster(monkeypatch):
    """With no worker running, however often beat fires, each cluster has one check waiting."""
    from django.core.cache import cache

    from clusters.models import Cluster

    app.conf.task_always_eager = False
    down = Cluster.objects.create(name="down", driver="imported", state="unavailable", credentials={"server": "https://127.0.0.1:1", "token": "x"})
    cache.delete(tasks._pending_key("health", down.pk))
    sent = []
    # stands for the broker: nothing consumes
    monkeypatch.setattr(tasks.check_cluster, "apply_async", lambda args, countdown: sent.append(args[0]))
    try:
        for _ in range(5):
            tasks.check_all_clusters()
    finally:
        cache.delete(tasks._pending_key("health", down.pk))
    assert sent == [down.pk]
