"""Every operation ends: none is left pending or running forever, whatever breaks.

- The broker down: starting an operation is a 503 naming the broker, and nothing is stored (a real
  redis-server this test starts and stops; the cache and locks stay on the suite's Redis).
- The broker dying between the check and the commit: the operation is failed with the reason.
- A worker killed mid-operation (its liveness lock no longer renewed): the periodic sweep fails
  the operation with the reason, and a removal's cluster goes to `error`, from where it can be
  removed again.
"""

import os
import shutil
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from clusters import tasks
from clusters.models import Cluster, ClusterState
from portal import operations
from portal.celery import app
from portal.locks import OwnedLock
from portal.models import Operation, OperationStatus
from tools import services

pytestmark = pytest.mark.django_db(transaction=True)


def _use_broker(url):
    # kombu keeps one connection pool per broker URL (pools.connections); point the app at another.
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker():
    """A private redis-server as the Celery broker (stopped by the test to simulate the outage)."""
    var = services.default_var_dir() / f"test-faults-broker-{os.getpid()}"
    url = services.ensure_redis(var)
    before, eager = app.conf.broker_url, app.conf.task_always_eager
    app.conf.task_always_eager = False
    _use_broker(url)

    class Broker:
        def stop(self):
            assert services.stop_redis(var)

    yield Broker()
    _use_broker(before)
    app.conf.task_always_eager = eager
    services.stop_all(var)
    shutil.rmtree(var, ignore_errors=True)


def test_sync_with_the_broker_down_is_a_clear_503_and_leaves_no_operation(world, broker):
    broker.stop()
    response = world.client(world.owner).post(f"/api/v1/clusters/{world.cluster.pk}/sync/")
    assert response.status_code == 503, response.content
    assert "Celery broker redis://127.0.0.1:" in response.json()["detail"]
    assert not Operation.objects.exists()


def test_removal_with_the_broker_down_changes_nothing(world, broker):
    broker.stop()
    response = world.client(world.owner).delete(f"/api/v1/clusters/{world.cluster.pk}/")
    assert response.status_code == 503, response.content
    world.cluster.refresh_from_db()
    assert world.cluster.state == ClusterState.ACTIVE
    assert not Operation.objects.exists()


def test_a_broker_lost_between_check_and_commit_fails_the_operation_with_the_reason(world, broker):
    cluster = world.cluster
    with pytest.raises(operations.BrokerUnavailable):
        with transaction.atomic():
            locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
            locked.set_state(ClusterState.REMOVING)
            locked.save()
            op = operations.start("remove", tasks.remove_cluster, cluster=locked, args=(locked.pk,))
            broker.stop()
    op.refresh_from_db()
    assert op.status == OperationStatus.FAILED
    assert "could not be queued" in op.error and "redis://127.0.0.1:" in op.error
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.ERROR and "removal failed: could not be queued" in cluster.last_error


def _running(kind, cluster, ago):
    op = Operation.objects.create(kind=kind, cluster=cluster, status=OperationStatus.RUNNING, started=timezone.now() - ago)
    Operation.objects.filter(pk=op.pk).update(modified=timezone.now() - ago)
    return op


def test_a_running_operation_whose_worker_is_gone_is_failed_with_the_reason(world):
    cluster = world.cluster
    Cluster.objects.filter(pk=cluster.pk).update(state=ClusterState.REMOVING)
    lost = _running("remove", cluster, timedelta(minutes=5))
    alive = _running("sync", world.other_cluster, timedelta(minutes=5))
    recent = _running("sync", world.other_cluster, timedelta(seconds=5))
    with OwnedLock(operations.liveness_lock_name(alive.pk)):  # its worker still renews its lock
        failed = operations.fail_lost(grace=60)
    assert [op.pk for op in failed] == [lost.pk]
    lost.refresh_from_db()
    assert lost.status == OperationStatus.FAILED and "the worker running it stopped" in lost.error
    assert lost.finished is not None and lost.log[-1]["message"].startswith("failed: the worker")
    assert Operation.objects.get(pk=alive.pk).status == OperationStatus.RUNNING
    assert Operation.objects.get(pk=recent.pk).status == OperationStatus.RUNNING
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.ERROR and "removal failed: the worker running it stopped" in cluster.last_error


def test_a_pending_operation_no_worker_took_is_failed_after_the_queue_timeout(world):
    old = Operation.objects.create(kind="sync", cluster=world.cluster)
    Operation.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(hours=2))
    new = Operation.objects.create(kind="sync", cluster=world.cluster)
    from portal.tasks import fail_lost_operations

    assert fail_lost_operations() == 1
    old.refresh_from_db()
    assert old.status == OperationStatus.FAILED and "its queued task was lost" in old.error
    assert Operation.objects.get(pk=new.pk).status == OperationStatus.PENDING


def test_a_redelivered_task_of_an_operation_already_failed_as_lost_does_nothing(world):
    cluster = world.cluster
    op = _running("remove", cluster, timedelta(minutes=5))
    operations.fail_lost(grace=60)
    tasks.remove_cluster.apply(args=(op.pk, cluster.pk))  # as the broker redelivers it later
    assert Cluster.objects.filter(pk=cluster.pk).exists()
    assert Operation.objects.get(pk=op.pk).status == OperationStatus.FAILED


def test_a_project_change_with_the_broker_down_is_kept_and_left_to_the_periodic_reconcile(world, broker):
    broker.stop()
    response = world.client(world.owner).patch(f"/api/v1/projects/{world.project.pk}/", {"description": "kept"}, format="json")
    assert response.status_code == 200, response.content
    world.project.refresh_from_db()
    assert world.project.description == "kept"


def test_a_cluster_left_removing_without_a_removal_under_way_can_be_removed_again(world):
    """Clusters an older Corral left in `removing` after a failed removal are not stuck there."""
    cluster = Cluster.objects.create(name="stuck", driver="imported", state=ClusterState.REMOVING)
    from clusters.models import ClusterMembership

    ClusterMembership.objects.create(cluster=cluster, user=world.owner, role="cluster-owner")
    Operation.objects.create(kind="remove", cluster=cluster, status=OperationStatus.FAILED, error="old failure")
    client = world.client(world.owner)
    assert client.delete(f"/api/v1/clusters/{cluster.pk}/").status_code == 202
    assert not Cluster.objects.filter(pk=cluster.pk).exists()
    busy = Cluster.objects.create(name="busy", driver="imported", state=ClusterState.REMOVING)
    ClusterMembership.objects.create(cluster=busy, user=world.owner, role="cluster-owner")
    Operation.objects.create(kind="remove", cluster=busy, status=OperationStatus.RUNNING)
    assert client.delete(f"/api/v1/clusters/{busy.pk}/").status_code == 400
