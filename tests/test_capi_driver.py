"""Corral's capi driver against a real management API server with Cluster API's own CRDs (from
the modules `make kube-tools` builds), WITHOUT the CAPI controllers running: the test plays their
part by writing the Cluster's status (conditions, replica counts), an event and the kubeconfig
Secret as CAPI would, and checks that Corral validates requests against the ClusterClass, follows
the conditions as an operation on a real Celery worker, takes the cluster over when its control
plane is available, scales, upgrades, deletes, and notices a Cluster deleted outside Corral.  The
end-to-end run with the real controllers is tests/test_capi_e2e.py."""

import base64
import copy
import json
from contextlib import contextmanager

import psutil
import pytest
import yaml
from celery.contrib.testing.worker import start_worker
from django.test import Client

from clusters import health
from clusters.models import Cluster, ClusterMembership
from clusters.sandbox import Sandbox
from portal.celery import app
from portal.models import GlobalRole, GlobalRoleBinding, Operation
from tests.conftest import World, make_user
from tests.kube_fixtures import _in_ci, imported_cluster, require_kube_binaries
from tests.waiting import wait_for

pytestmark = [pytest.mark.kube]
CRDS = ["clusterclasses", "clusters", "machines", "machinedeployments"]
API = "/apis/cluster.x-k8s.io/v1beta2"
CLASS = {
    "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "ClusterClass", "metadata": {"name": "in-memory", "namespace": "default"},
    "spec": {
        "kubernetesVersions": ["v1.34.3", "v1.35.0"],
        "controlPlane": {"templateRef": {"apiVersion": "controlplane.cluster.x-k8s.io/v1beta2", "kind": "KubeadmControlPlaneTemplate", "name": "cp"}},
        "infrastructure": {"templateRef": {"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "DevClusterTemplate", "name": "c"}},
        "workers": {"machineDeployments": [{"class": "default-worker",
                    "bootstrap": {"templateRef": {"apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": "KubeadmConfigTemplate", "name": "w"}},
                    "infrastructure": {"templateRef": {"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "DevMachineTemplate", "name": "w"}}}]},
        "variables": [{"name": "machineStartupDuration", "required": False,
                       "schema": {"openAPIV3Schema": {"type": "string", "pattern": "^[0-9]+(ms|s|m)$", "default": "10s"}}}],
    },
}


def _crd_dir():
    from clusters.sandbox.binaries import capi_config_dir

    bases = capi_config_dir() / "core" / "crd" / "bases"
    if not bases.is_dir():
        message = f"Cluster API's CRDs are not built ({bases}); build them with `make kube-tools`"
        pytest.fail(message, pytrace=False) if _in_ci() else pytest.skip(message)
    return bases


@pytest.fixture(scope="module")
def management(tmp_path_factory):
    require_kube_binaries()
    bases = _crd_dir()
    sandbox = Sandbox("capi-crds", tmp_path_factory.mktemp("capi"))
    sandbox.up(nodes=1)
    try:
        yield sandbox, bases
    finally:
        sandbox.down()


def _install_capi(sandbox, bases):
    api = sandbox.api()
    for plural in CRDS:
        api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                   yaml.safe_load((bases / f"cluster.x-k8s.io_{plural}.yaml").read_text()), exist_ok=True)
    wait_for(lambda: _served(api), 30, "the Cluster API CRDs to be served")
    api.create(f"{API}/namespaces/default/clusterclasses", copy.deepcopy(CLASS), exist_ok=True)


def _admin_management_error(cluster):
    from django.forms.utils import ErrorDict

    from clusters.admin import ClusterForm

    form = ClusterForm(instance=cluster)
    form.cleaned_data, form._errors = {}, ErrorDict()
    form._clean_management()
    return form.errors.get("is_management", [None])[0]


def _served(api):
    try:
        return all(api.get(f"{API}/{plural}") for plural in CRDS)  # listable (not "storage is initializing")
    except Exception:  # noqa: BLE001 - 404 until the CRDs are established
        return False


def _request(mc, **changes):
    config = {"management_cluster": mc.pk, "class": "in-memory", "namespace": "default", "version": "v1.34.3",
              "control_plane_replicas": 1, "workers": [{"name": "md-0", "class": "default-worker", "replicas": 3}],
              "variables": {"machineStartupDuration": "2s"}}
    config.update(changes)
    return {"name": "made-by-capi", "driver": "capi", "driver_config": config}


@pytest.mark.django_db
def test_management_cluster_classes_and_every_bad_input_named(management):
    sandbox, bases = management
    world = World()
    mc = imported_cluster(sandbox, "mgmt")
    ClusterMembership.objects.create(cluster=mc, user=world.owner, role="cluster-owner")
    owner = world.client(world.owner)

    response = owner.patch(f"/api/v1/clusters/{mc.pk}/", {"is_management": True}, format="json")
    assert response.status_code == 400 and "does not serve Cluster API" in response.json()["is_management"][0]
    assert _admin_management_error(mc) == response.json()["is_management"][0]  # the admin asks the same question
    _install_capi(sandbox, bases)
    assert owner.patch(f"/api/v1/clusters/{mc.pk}/", {"is_management": True}, format="json").json()["is_management"] is True
    # Only its owners mark it: a member may not.
    assert world.client(world.viewer).patch(f"/api/v1/clusters/{mc.pk}/", {"is_management": False}, format="json").status_code == 404

    classes = owner.get(f"/api/v1/clusters/{mc.pk}/cluster-classes/").json()
    assert [(c["name"], c["kubernetes_versions"], c["worker_classes"]) for c in classes] == [
        ("in-memory", ["v1.34.3", "v1.35.0"], ["default-worker"])]
    assert [(v["name"], v["type"], v["default"]) for v in classes[0]["variables"]] == [("machineStartupDuration", "string", "10s")]
    assert world.client(world.stranger).get(f"/api/v1/clusters/{mc.pk}/cluster-classes/").status_code == 404
    assert owner.get(f"/api/v1/clusters/{world.cluster.pk}/cluster-classes/").status_code == 400  # not a management cluster

    bad = {
        "class": ({"class": "no-such-class"}, "no ClusterClass 'no-such-class'"),
        "version": ({"version": "v1.36.3"}, "offers v1.34.3, v1.35.0"),
        "control_plane_replicas": ({"control_plane_replicas": -1}, "from 0 to"),
        "workers[0].replicas": ({"workers": [{"name": "md-0", "class": "default-worker", "replicas": -1}]}, "from 0 to"),
        "workers[0].class": ({"workers": [{"name": "md-0", "class": "gpu", "replicas": 1}]}, "no worker class 'gpu'"),
        "variables.machineStartupDuration": ({"variables": {"machineStartupDuration": "soon"}}, "does not match"),
        "variables.colour": ({"variables": {"colour": "red"}}, "no such variable"),
        "management_cluster": ({"management_cluster": world.cluster.pk}, "no management cluster"),
    }
    for field, (change, words) in bad.items():
        response = owner.post("/api/v1/clusters/", _request(mc, **change), format="json")
        assert response.status_code == 400, (field, response.content)
        assert words in response.json()["driver_config"][field][0], (field, response.json())
    assert not Cluster.objects.filter(driver="capi").exists()
    assert not sandbox.api().get(f"{API}/namespaces/default/clusters")["items"]

    # The portal's create page and the management cluster's page list the classes; the admin checks as the API does.
    page = Client()
    page.force_login(world.owner)
    html = page.get("/clusters/new/").content.decode()
    assert 'id="create-capi"' in html and "machineStartupDuration" in html and "v1.35.0" in html
    assert 'id="cluster-classes"' in page.get(f"/clusters/{mc.pk}/").content.decode()
    admin = Client()
    admin.force_login(world.admin)
    form = {"name": "by-admin", "description": "", "labels": "{}", "driver": "capi", "provider": "", "nodes": "",
            "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}
    refused = admin.post("/admin/clusters/cluster/add/", {**form, "driver_config": json.dumps(_request(mc, version="v1.36.3")["driver_config"])})
    assert refused.status_code == 200 and "version: the class &#x27;in-memory&#x27; offers" in refused.content.decode()

    # Without "Create clusters": 403 whatever the body; with it but not seeing the management cluster: as if it did not exist.
    assert world.client(world.viewer).post("/api/v1/clusters/", _request(mc, version="v9.9.9"), format="json").status_code == 403
    GlobalRoleBinding.objects.create(user=world.stranger, role=GlobalRole.CREATE_CLUSTERS)
    response = world.client(world.stranger).post("/api/v1/clusters/", _request(mc), format="json")
    assert response.status_code == 400 and "no management cluster" in response.json()["driver_config"]["management_cluster"][0]


def _status(sandbox, name, status):
    api = sandbox.api()
    obj = api.get(f"{API}/namespaces/default/clusters/{name}")
    obj["status"] = {"observedGeneration": obj["metadata"]["generation"], **status}
    api.request("PUT", f"{API}/namespaces/default/clusters/{name}/status", obj)


def _conditions(*true):
    return [{"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"} for t in true]


@contextmanager
def _paused_apiserver(sandbox):
    apiserver = psutil.Process(sandbox._state()["components"]["kube-apiserver"]["pid"])
    apiserver.suspend()
    try:
        yield
    finally:
        apiserver.resume()


def _op_says(op_id, words):
    op = Operation.objects.get(pk=op_id)
    return any(words in line["message"] for line in op.log)


@pytest.mark.django_db(transaction=True)
def test_provision_scale_upgrade_and_delete_follow_what_capi_reports(management, settings):
    settings.CAPI_PROVISION_TIMEOUT = 60  # a step the test does not take fails the operation, not the worker's exit
    sandbox, bases = management
    _install_capi(sandbox, bases)
    app.conf.task_always_eager = False
    owner, nobody = make_user("capi-owner"), make_user("capi-nobody")
    GlobalRoleBinding.objects.create(user=owner, role=GlobalRole.CREATE_CLUSTERS)
    mc = imported_cluster(sandbox, "mgmt-2")
    Cluster.objects.filter(pk=mc.pk).update(is_management=True)
    ClusterMembership.objects.create(cluster=mc, user=owner, role="cluster-owner")
    client, stranger = _client(owner), _client(nobody)
    api = sandbox.api()

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        response = client.post("/api/v1/clusters/", {**_request(mc), "name": "Shop Prod"}, format="json")
        assert response.status_code == 201, response.content
        cluster, op = Cluster.objects.get(pk=response.json()["id"]), response.json()["operation"]
        path = f"{API}/namespaces/default/clusters/{cluster.slug}"
        obj = wait_for(lambda: _get(api, path), 30, "Corral to write the Cluster")
        assert obj["metadata"]["labels"] == {"corral.io/managed-by": "corral", "corral.io/cluster-id": str(cluster.pk)}
        assert obj["spec"]["topology"]["workers"]["machineDeployments"] == [{"name": "md-0", "class": "default-worker", "replicas": 3}]
        assert obj["spec"]["topology"]["variables"] == [{"name": "machineStartupDuration", "value": "2s"}]

        # CAPI's milestones, as the operation's words, in order.
        _status(sandbox, cluster.slug, {"phase": "Provisioning", "conditions": _conditions("InfrastructureReady")})
        wait_for(lambda: _op_says(op, "infrastructure is ready"), 20, "the infrastructure milestone")
        api.create("/api/v1/namespaces/default/events", {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "capi-warning"}, "type": "Warning", "reason": "BootFailed",
            "message": "machine did not boot in time", "involvedObject": {"kind": "Machine", "name": f"{cluster.slug}-cp-x1", "namespace": "default"}})
        wait_for(lambda: _op_says(op, "warning from Machine"), 20, "CAPI's warning in the operation")
        # A management cluster too busy to answer (its API server paused past Corral's request
        # timeout; bench/capi.py met it at 20 clusters at once) is asked again, not given up on.
        with _paused_apiserver(sandbox):
            wait_for(lambda: _op_says(op, "the management cluster did not answer"), settings.KUBE_REQUEST_TIMEOUT + 30,
                     "the unanswered poll in the operation", interval=1)
        assert Operation.objects.get(pk=op).status == "running"
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{cluster.slug}-kubeconfig"},
                  "data": {"value": base64.b64encode(sandbox.kubeconfig_path.read_bytes()).decode()}}
        api.create("/api/v1/namespaces/default/secrets", secret)
        _status(sandbox, cluster.slug, {"phase": "Provisioned", "conditions": _conditions("InfrastructureReady", "ControlPlaneInitialized", "ControlPlaneAvailable"),
                                        "workers": {"desiredReplicas": 3, "availableReplicas": 1, "upToDateReplicas": 1}})
        wait_for(lambda: _op_says(op, "1 of 3 available"), 20, "the workers' count")
        _status(sandbox, cluster.slug, {"phase": "Provisioned", "conditions": _conditions(
            "InfrastructureReady", "ControlPlaneInitialized", "ControlPlaneAvailable", "WorkersAvailable"),
            "controlPlane": {"desiredReplicas": 1, "availableReplicas": 1, "upToDateReplicas": 1},
            "workers": {"desiredReplicas": 3, "availableReplicas": 3, "upToDateReplicas": 3}})
        wait_for(lambda: Operation.objects.get(pk=op).status == "succeeded", 30, "provisioning to finish")
        cluster.refresh_from_db()
        assert cluster.state == "active" and cluster.api_endpoint == sandbox.endpoint
        page = Client()
        page.force_login(owner)
        html = page.get(f"/clusters/{cluster.pk}/").content.decode()
        assert 'id="capi-pools"' in html and 'id="capi-scale"' in html and "md-0" in html
        wait_for(lambda: cluster.last_synced or Cluster.objects.get(pk=cluster.pk).last_synced, 30, "the first sync")

        # Others may not change it.
        assert stranger.post(f"/api/v1/clusters/{cluster.pk}/scale/", {"pool": "md-0", "replicas": 5}, format="json").status_code == 404
        assert stranger.post(f"/api/v1/clusters/{cluster.pk}/upgrade/", {"version": "v1.35.0"}, format="json").status_code == 404
        assert stranger.delete(f"/api/v1/clusters/{cluster.pk}/").status_code == 404
        assert client.post(f"/api/v1/clusters/{cluster.pk}/scale/", {"pool": "md-9", "replicas": 5}, format="json").json()["pool"]
        assert "offers" in client.post(f"/api/v1/clusters/{cluster.pk}/upgrade/", {"version": "v1.36.3"}, format="json").json()["version"][0]

        # Scale: the topology changes; done when CAPI reports 5 available and up to date.
        op = client.post(f"/api/v1/clusters/{cluster.pk}/scale/", {"pool": "md-0", "replicas": 5}, format="json").json()["id"]
        wait_for(lambda: _get(api, path)["spec"]["topology"]["workers"]["machineDeployments"][0]["replicas"] == 5, 20, "the pool to be scaled")
        assert Cluster.objects.get(pk=cluster.pk).state == "updating"
        with _paused_apiserver(sandbox):  # following the roll, too, an unanswered poll is asked again
            wait_for(lambda: _op_says(op, "the management cluster did not answer"), settings.KUBE_REQUEST_TIMEOUT + 30,
                     "the unanswered poll in the scale's operation", interval=1)
        assert Operation.objects.get(pk=op).status == "running"
        done = {"phase": "Provisioned", "conditions": _conditions("InfrastructureReady", "ControlPlaneInitialized", "ControlPlaneAvailable", "WorkersAvailable"),
                "controlPlane": {"desiredReplicas": 1, "availableReplicas": 1, "upToDateReplicas": 1},
                "workers": {"desiredReplicas": 5, "availableReplicas": 5, "upToDateReplicas": 5}}
        _status(sandbox, cluster.slug, done)
        wait_for(lambda: Operation.objects.get(pk=op).status == "succeeded", 30, "the scale to finish")
        assert Cluster.objects.get(pk=cluster.pk).driver_config["workers"][0]["replicas"] == 5

        # Upgrade: the version changes; done when every machine is up to date again.
        op = client.post(f"/api/v1/clusters/{cluster.pk}/upgrade/", {"version": "v1.35.0"}, format="json").json()["id"]
        wait_for(lambda: _get(api, path)["spec"]["topology"]["version"] == "v1.35.0", 20, "the version to change")
        _status(sandbox, cluster.slug, {**done, "workers": {"desiredReplicas": 5, "availableReplicas": 5, "upToDateReplicas": 2}})
        _status(sandbox, cluster.slug, done)
        wait_for(lambda: Operation.objects.get(pk=op).status == "succeeded", 30, "the upgrade to finish")
        assert Cluster.objects.get(pk=cluster.pk).driver_config["version"] == "v1.35.0"

        # Delete: Corral deletes the Cluster and forgets it only once CAPI is done (its finalizer gone).
        hold = _get(api, path)
        hold["metadata"]["finalizers"] = ["test.corral.io/capi-is-deleting"]
        api.request("PUT", path, hold)
        op = client.delete(f"/api/v1/clusters/{cluster.pk}/").json()["id"]
        wait_for(lambda: _op_says(op, "deleting"), 20, "the removal to wait for CAPI")
        assert Cluster.objects.filter(pk=cluster.pk, state="removing").exists()
        with _paused_apiserver(sandbox):
            wait_for(lambda: _op_says(op, "the management cluster did not answer"), settings.KUBE_REQUEST_TIMEOUT + 30,
                     "the unanswered poll in the removal's operation", interval=1)
        assert Operation.objects.get(pk=op).status == "running"
        held = _get(api, path)
        held["metadata"]["finalizers"] = []
        api.request("PUT", path, held)
        wait_for(lambda: Operation.objects.get(pk=op).status == "succeeded", 30, "the removal to finish")
        assert not Cluster.objects.filter(pk=cluster.pk).exists()


def _client(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


def _get(api, path):
    try:
        return api.get(path)
    except Exception:  # noqa: BLE001 - not there (yet, or any more)
        return None


@pytest.mark.django_db
def test_a_cluster_deleted_outside_corral_is_noticed(management):
    sandbox, bases = management
    _install_capi(sandbox, bases)
    mc = imported_cluster(sandbox, "mgmt-3")
    Cluster.objects.filter(pk=mc.pk).update(is_management=True)
    cluster = Cluster.objects.create(name="outside", driver="capi", state="active", credentials=mc.credentials,
                                     driver_config={"management_cluster": mc.pk, "namespace": "default", "class": "in-memory",
                                                    "version": "v1.34.3", "workers": []})
    from clusters.capi.driver import cluster_object

    sandbox.api().create(f"{API}/namespaces/default/clusters", cluster_object(cluster))
    assert health.check(cluster.pk) == "active"
    sandbox.api().request("DELETE", f"{API}/namespaces/default/clusters/{cluster.slug}")
    assert health.check(cluster.pk) == "error"
    cluster.refresh_from_db()
    assert "deleted from the management cluster outside Corral" in cluster.last_error
