"""The sandbox driver end to end: creating a cluster with driver "sandbox" provisions a real local
control plane as an operation with progress; deleting the cluster tears it down."""

import pytest

from clusters.models import Cluster, Node
from clusters.sandbox import Sandbox
from portal.models import Operation
from tests.kube_fixtures import require_kube_binaries

pytestmark = pytest.mark.kube


def test_create_provisions_and_delete_tears_down(world, settings, tmp_path, django_capture_on_commit_callbacks):
    require_kube_binaries()
    settings.SANDBOX_ROOT = tmp_path
    client = world.client(world.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/clusters/", {"name": "try-it", "driver": "sandbox", "driver_config": {"nodes": 2}}, format="json")
    assert response.status_code == 201, response.content
    cluster = Cluster.objects.get(pk=response.json()["id"])
    operation = Operation.objects.get(pk=response.json()["operation"])
    sandbox = Sandbox(f"cluster-{cluster.slug}", root=tmp_path)
    try:
        assert operation.status == "succeeded", operation.error
        assert operation.progress == 100
        steps = [line["message"] for line in operation.log]
        assert any("etcd" in s for s in steps) and any("nodes" in s for s in steps)
        assert cluster.state == "active" and cluster.kubernetes_version.startswith("v1.36")
        assert cluster.api_endpoint == sandbox.endpoint and cluster.credentials["token"]
        assert sandbox.is_running()
        # the first sync ran after provisioning, and the default projects exist
        assert Node.objects.filter(cluster=cluster, ready=True).count() == 2
        assert set(cluster.projects.values_list("name", flat=True)) >= {"System", "Default"}
        body = client.get(f"/api/v1/clusters/{cluster.pk}/").json()
        assert body["summary"]["nodes_ready"] == 2 and "token" not in str(body)

        with django_capture_on_commit_callbacks(execute=True):
            assert client.delete(f"/api/v1/clusters/{cluster.pk}/").status_code == 202
        assert not Cluster.objects.filter(pk=cluster.pk).exists()
        assert not sandbox.is_running()
        removal = Operation.objects.filter(kind="remove").latest("created")
        assert removal.status == "succeeded"
    finally:
        if sandbox.is_running():
            sandbox.down()
