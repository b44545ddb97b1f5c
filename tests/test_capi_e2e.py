"""Issue 16's must-show, end to end, with the real Cluster API controllers (the ground of
docs/capi.md: `sandbox up --capi`, CAPI's in-memory infrastructure provider simulating the
machines): through Corral's API and a real Celery worker, create a cluster of 1 control-plane
machine and 3 workers, follow it to active and see its nodes; scale the pool to 5 and see 5
workers; upgrade it and see the machines roll; delete it and see CAPI remove it and Corral forget
it.  A user without "Create clusters" can do none of it."""

import pytest
from celery.contrib.testing.worker import start_worker
from rest_framework.test import APIClient

from clusters import sync
from clusters.models import Cluster, ClusterMembership, Node
from portal.celery import app
from portal.models import GlobalRole, GlobalRoleBinding, Operation
from tests.conftest import make_user
from tests.kube_fixtures import imported_cluster
from tests.waiting import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
API = "/apis/cluster.x-k8s.io/v1beta2"


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _finished(op_id, timeout, what):
    def done():
        op = Operation.objects.get(pk=op_id)
        assert op.status != "failed", f"{what} failed: {op.error}\n" + "\n".join(line["message"] for line in op.log[-15:])
        return op if op.status == "succeeded" else None
    return wait_for(done, timeout, what, detail=lambda: "\n".join(line["message"] for line in Operation.objects.get(pk=op_id).log[-10:]))


def _nodes(cluster, wanted):
    """Resync (as the periodic sync does; no beat runs here) until the inventory has ``wanted`` nodes."""
    def count():
        try:
            sync.sync(cluster.pk, wait=30)
        except sync.SyncFailed:
            pass
        return Node.objects.filter(cluster=cluster).count() == wanted
    wait_for(count, 120, f"{wanted} nodes in Corral's inventory", interval=3,
             detail=lambda: f"has {Node.objects.filter(cluster=cluster).count()}; operations: "
             + " | ".join(f"{op.kind}: {_log(op)[-3:]}" for op in Operation.objects.filter(cluster=cluster)))


def _log(op):
    return [line["message"] for line in op.log]


def test_create_scale_upgrade_and_delete_through_cluster_api(capi_sandbox, settings):
    from clusters.sandbox import capi

    settings.CAPI_PROVISION_TIMEOUT = 300
    app.conf.task_always_eager = False
    owner, nobody = make_user("platform"), make_user("nobody")
    GlobalRoleBinding.objects.create(user=owner, role=GlobalRole.CREATE_CLUSTERS)
    mc = imported_cluster(capi_sandbox, "management")
    ClusterMembership.objects.create(cluster=mc, user=owner, role="cluster-owner")
    client, stranger = _client(owner), _client(nobody)
    assert client.patch(f"/api/v1/clusters/{mc.pk}/", {"is_management": True}, format="json").status_code == 200
    classes = client.get(f"/api/v1/clusters/{mc.pk}/cluster-classes/").json()
    offered = next(c for c in classes if c["name"] == capi.CLASS_NAME)["kubernetes_versions"]
    first, upgrade_to = offered[-2], offered[-1]
    request = {"name": "shop", "driver": "capi", "driver_config": {
        "management_cluster": mc.pk, "class": capi.CLASS_NAME, "namespace": capi.CLASS_NAMESPACE, "version": first,
        "control_plane_replicas": 1, "workers": [{"name": "md-0", "class": "default-worker", "replicas": 3}],
        "variables": {"machineStartupDuration": "1s"}}}
    assert stranger.post("/api/v1/clusters/", request, format="json").status_code == 403

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=60):
        response = client.post("/api/v1/clusters/", request, format="json")
        assert response.status_code == 201, response.content
        cluster = Cluster.objects.get(pk=response.json()["id"])
        op = _finished(response.json()["operation"], 300, "provisioning")
        said = _log(op)
        for milestone in ("infrastructure is ready", "control plane is initialized", "control plane is available", "kubeconfig Secret"):
            assert any(milestone in line for line in said), (milestone, said)
        cluster.refresh_from_db()
        assert cluster.state == "active" and cluster.api_endpoint.startswith("https://")
        _nodes(cluster, 4)  # 1 control-plane machine + 3 workers
        # The in-memory API server serves only some groups: synced anyway, the rest named.
        assert Cluster.objects.get(pk=cluster.pk).missing_apis

        assert stranger.post(f"/api/v1/clusters/{cluster.pk}/scale/", {"pool": "md-0", "replicas": 5}, format="json").status_code == 404
        response = client.post(f"/api/v1/clusters/{cluster.pk}/scale/", {"pool": "md-0", "replicas": 5}, format="json")
        assert response.status_code == 202, response.content
        _finished(response.json()["id"], 300, "the scale to 5")
        _nodes(cluster, 6)

        assert stranger.post(f"/api/v1/clusters/{cluster.pk}/upgrade/", {"version": upgrade_to}, format="json").status_code == 404
        response = client.post(f"/api/v1/clusters/{cluster.pk}/upgrade/", {"version": upgrade_to}, format="json")
        assert response.status_code == 202, response.content
        op = _finished(response.json()["id"], 300, f"the upgrade to {upgrade_to}")
        rolled = [line for line in _log(op) if f"running {upgrade_to}" in line]
        assert len(set(rolled)) >= 2, _log(op)  # the machines seen rolling, not all at once
        machines = capi_sandbox.api().get(f"{API}/namespaces/{capi.CLASS_NAMESPACE}/machines?labelSelector=cluster.x-k8s.io/cluster-name={cluster.slug}")
        assert {m["spec"]["version"] for m in machines["items"]} == {upgrade_to}
        assert Cluster.objects.get(pk=cluster.pk).kubernetes_version == upgrade_to

        assert stranger.delete(f"/api/v1/clusters/{cluster.pk}/").status_code == 404
        response = client.delete(f"/api/v1/clusters/{cluster.pk}/")
        assert response.status_code == 202
        op = _finished(response.json()["id"], 300, "the removal")
        assert any("Cluster API has deleted the cluster" in line for line in _log(op))
        assert not Cluster.objects.filter(pk=cluster.pk).exists()
        assert not capi_sandbox.api().get(f"{API}/namespaces/{capi.CLASS_NAMESPACE}/clusters")["items"]
