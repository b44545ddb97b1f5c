"""`removing` has a way out: a removal that fails puts the cluster in `error` with the reason, and
removing it again (API or admin) retries.  Against a real sandbox with a name too long for the old
`cluster-<slug>` sandbox name, whose teardown is made to fail for real: another process holds the
sandbox's start/stop lock."""

import fcntl

import pytest
from django.test import Client

from clusters.models import Cluster, ClusterState
from clusters.sandbox import Sandbox, sandbox_name
from portal.celery import app
from portal.models import Operation
from tests.kube_fixtures import require_kube_binaries

pytestmark = pytest.mark.kube

LONG_NAME = "a cluster name far longer than the forty characters a sandbox name may have"


@pytest.fixture
def quiet_eager():
    """Eager tasks record their failure on the operation instead of raising into the request, as a
    worker would."""
    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = True


def test_a_failed_removal_goes_to_error_and_can_be_retried(world, settings, tmp_path, quiet_eager, django_capture_on_commit_callbacks):
    require_kube_binaries()
    settings.SANDBOX_ROOT = tmp_path
    client = world.client(world.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/clusters/", {"name": LONG_NAME, "driver": "sandbox", "driver_config": {"nodes": 1}}, format="json")
    assert response.status_code == 201, response.content
    cluster = Cluster.objects.get(pk=response.json()["id"])
    assert len(cluster.slug) > 40 - len("cluster-")
    sandbox = Sandbox(sandbox_name(f"cluster-{cluster.slug}"), root=tmp_path)
    try:
        assert cluster.state == ClusterState.ACTIVE, Operation.objects.get(pk=response.json()["operation"]).error
        assert sandbox.is_running()

        with open(tmp_path / f".{sandbox.name}.lock", "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # someone else is starting or stopping this sandbox
            with django_capture_on_commit_callbacks(execute=True):
                assert client.delete(f"/api/v1/clusters/{cluster.pk}/").status_code == 202
            removal = Operation.objects.filter(kind="remove").latest("created")
            assert removal.status == "failed" and "being started or stopped by another process" in removal.error
            body = client.get(f"/api/v1/clusters/{cluster.pk}/").json()
            assert body["state"] == "error" and body["last_error"].startswith("removal failed: ")

            admin = Client()
            admin.force_login(world.admin)
            with django_capture_on_commit_callbacks(execute=True):
                response = admin.post("/admin/clusters/cluster/", {"action": "remove_clusters", "_selected_action": [cluster.pk]})
            assert response.status_code == 302
            assert Operation.objects.filter(kind="remove", status="failed").count() == 2  # the admin retried
            cluster.refresh_from_db()
            assert cluster.state == ClusterState.ERROR
            assert sandbox.is_running()

        with django_capture_on_commit_callbacks(execute=True):
            assert client.delete(f"/api/v1/clusters/{cluster.pk}/").status_code == 202
        assert Operation.objects.filter(kind="remove").latest("created").status == "succeeded"
        assert not Cluster.objects.filter(pk=cluster.pk).exists()
        assert not sandbox.is_running()
    finally:
        if sandbox.is_running():
            sandbox.down()
    assert not Operation.objects.filter(status__in=["pending", "running"]).exists()
