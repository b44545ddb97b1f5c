"""Issue 16's must-show, end to end, with the real Cluster API controllers (the ground of
docs/capi.md: `sandbox up --capi`, CAPI's in-memory infrastructure provider simulating the
machines) and a real Celery worker: in a real browser on the real ASGI server, the portal's create
form refuses a version the class does not offer (the error names the field) and then creates a
cluster of 1 control-plane machine and 3 workers; its page follows the provisioning live to
active, its operation's page tells CAPI's milestones, and its nodes show once synced.  Then,
through the API (the same endpoints the page's forms post to): scale the pool to 5 and see 5
workers; upgrade it and see the machines roll; delete it and see CAPI remove it and Corral forget
it.  A user without "Create clusters" can do none of it.  One Cluster API run: CI time."""

import json

import pytest
from celery.contrib.testing.worker import start_worker
from rest_framework.test import APIClient

from clusters import sync
from clusters.models import Cluster, ClusterMembership, Node
from portal.celery import app
from portal.models import GlobalRole, GlobalRoleBinding, Operation
from tests.conftest import make_user
from tests.kube_fixtures import imported_cluster
from tests.test_browser import browser, csp_violations, live_server_url, log_in, person  # noqa: F401 - fixtures
from tests.test_browser_shell import artifacts_dir
from tests.waiting import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
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


def _fill(driver, field_id, text):
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, field_id)
    field.clear()
    field.send_keys(text)


def _create_from_the_portal(driver, url, mc, version, offered):
    """The create page's Cluster API form: a version the class does not offer is refused with the
    field named (nothing stored), then the real one creates the cluster and opens its page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from clusters.sandbox import capi

    driver.get(f"{url}/clusters/new/")
    classes = driver.find_element(By.ID, f"classes-{mc.pk}").text
    assert capi.CLASS_NAME in classes and ", ".join(offered) in classes, classes
    _fill(driver, "k-name", "shop")
    _fill(driver, "k-class", capi.CLASS_NAME)
    _fill(driver, "k-namespace", capi.CLASS_NAMESPACE)
    _fill(driver, "k-version", "v1.99.0")
    _fill(driver, "k-cp", "1")
    _fill(driver, "k-workers", json.dumps([{"name": "md-0", "class": "default-worker", "replicas": 3}]))
    _fill(driver, "k-variables", json.dumps({"machineStartupDuration": "1s"}))
    form = driver.find_element(By.ID, "create-capi")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    errors = WebDriverWait(driver, 15).until(lambda d: form.find_element(By.CSS_SELECTOR, ".form-errors").text)
    assert errors.startswith("driver_config.version:") and "offers " + ", ".join(offered) in errors, errors
    driver.execute_script("arguments[0].scrollIntoView({block: 'end'})", form)
    driver.save_screenshot(str(artifacts_dir() / "capi-create-bad-version.png"))
    assert not Cluster.objects.filter(driver="capi").exists()

    _fill(driver, "k-version", version)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 15).until(lambda d: d.current_url.rstrip("/").split("/")[-1].isdigit())
    return Cluster.objects.get(pk=int(driver.current_url.rstrip("/").split("/")[-1]))


def _follow_on_its_page(driver, cluster, op):
    """The open cluster page, never reloaded: its state goes to active and the provisioning's
    progress bar moves as CAPI's conditions come, pushed over the websocket."""
    from selenium.webdriver.common.by import By

    state = driver.find_element(By.CSS_SELECTOR, f"#cluster-{cluster.pk} [data-field=state]")
    bar = driver.find_element(By.CSS_SELECTOR, f"#operation-{op.pk} [data-field=progress]")
    status = driver.find_element(By.CSS_SELECTOR, f"#operation-{op.pk} [data-field=status]")
    seen = {(state.text, bar.get_attribute("value"))}

    def done():
        seen.add((state.text, bar.get_attribute("value")))
        failed = Operation.objects.get(pk=op.pk)
        assert failed.status != "failed", f"provisioning failed: {failed.error}\n" + "\n".join(_log(failed)[-15:])
        return status.text == "succeeded" and state.text == "active"
    wait_for(done, 300, "the cluster page to show the provisioning succeeded and the cluster active", interval=0.3,
             detail=lambda: f"page shows {sorted(seen)}; log: {_log(Operation.objects.get(pk=op.pk))[-5:]}")
    assert bar.get_attribute("value") == "100"
    states = {s for s, _ in seen}
    percents = {int(p) for _, p in seen}
    # Moved live, step by step: seen provisioning, part way through CAPI's milestones, then done.
    assert "provisioning" in states and any(10 < p < 95 for p in percents) and 100 in percents, sorted(seen)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", bar)
    driver.save_screenshot(str(artifacts_dir() / "capi-cluster-active.png"))


def test_create_from_the_portal_then_scale_upgrade_and_delete_through_cluster_api(capi_sandbox, settings, browser, live_server_url):  # noqa: F811
    from selenium.webdriver.common.by import By

    from clusters.sandbox import capi

    settings.CAPI_PROVISION_TIMEOUT = 300
    app.conf.task_always_eager = False
    owner, nobody = person("platform"), make_user("nobody")
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

    log_in(browser, live_server_url, owner)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=60):
        cluster = _create_from_the_portal(browser, live_server_url, mc, first, offered)
        assert cluster.driver == "capi" and cluster.driver_config["version"] == first
        assert cluster.driver_config["workers"] == request["driver_config"]["workers"]
        op = Operation.objects.get(cluster=cluster, kind="provision")
        _follow_on_its_page(browser, cluster, op)
        browser.get(f"{live_server_url}/operations/{op.pk}/")
        said = browser.find_element(By.CSS_SELECTOR, "[data-field=log]").text
        for milestone in ("infrastructure is ready", "control plane is initialized", "control plane is available", "kubeconfig Secret"):
            assert milestone in said, (milestone, said)
        cluster.refresh_from_db()
        assert cluster.state == "active" and cluster.api_endpoint.startswith("https://")
        _nodes(cluster, 4)  # 1 control-plane machine + 3 workers
        browser.get(f"{live_server_url}/clusters/{cluster.pk}/")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#nodes tr:not(.empty-row)")) == 4
        # The in-memory API server serves only some groups: synced anyway, the rest named.
        assert Cluster.objects.get(pk=cluster.pk).missing_apis
        assert browser.find_elements(By.ID, "missing-apis")
        browser.execute_script("document.getElementById('nodes-title').scrollIntoView()")
        browser.save_screenshot(str(artifacts_dir() / "capi-cluster-nodes.png"))
        assert not csp_violations(browser)

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
