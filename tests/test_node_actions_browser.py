"""Node cordon and drain from the node page in a real browser (headless Chromium) against a real
sandbox: each asks first, the page shows the node cordoned and links the drain's progress, and the
drained node's pods are started elsewhere by their ReplicaSet."""

import json
import time

import pytest

from clusters import sync
from clusters.models import Cluster, ClusterMembership, Node
from tests.test_browser import browser, csp_violations, live_server_url, log_in, person  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.kube, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker():
    """A real Celery worker runs the drain, as in production."""
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app

    app.conf.task_always_eager = False
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        yield


def test_cordon_and_drain_a_node_from_its_page(worker, sandbox, kubectl, browser, live_server_url):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    user = person("operator")
    cluster = Cluster.objects.create(
        name="nodes-browser", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    ClusterMembership.objects.create(cluster=cluster, user=user, role="cluster-owner")
    kubectl("create", "deployment", "web", "--image=nginx:1.27", "--replicas=3")
    deadline = time.monotonic() + 60
    while True:
        pods = json.loads(kubectl("get", "pods", "-l", "app=web", "-o", "json"))["items"]
        if len(pods) == 3 and all(p["status"].get("phase") == "Running" for p in pods):
            break
        assert time.monotonic() < deadline, "the deployment never ran"
        time.sleep(0.5)
    sync.sync(cluster.pk)
    # The session's sandbox is shared: a node holding another test's bare pod (no controller) cannot
    # be drained without force, so drain a node that holds only pods a controller would recreate.
    everywhere = json.loads(kubectl("get", "pods", "--all-namespaces", "-o", "json"))["items"]
    bare = {p["spec"].get("nodeName") for p in everywhere if not p["metadata"].get("ownerReferences")}
    names = [p["spec"]["nodeName"] for p in pods if p["spec"]["nodeName"] not in bare]
    assert names, f"every node running web also runs a pod without a controller: {sorted(bare)}"
    node = Node.objects.get(cluster=cluster, name=max(set(names), key=names.count))
    try:
        log_in(browser, live_server_url, user)
        browser.get(f"{live_server_url}/nodes/{node.pk}/")
        browser.find_element(By.XPATH, f"//div[@id='node-actions-{node.pk}']/button[text()='Cordon']").click()
        WebDriverWait(browser, 5).until(lambda d: d.switch_to.alert)
        assert "Cordon" in browser.switch_to.alert.text
        browser.switch_to.alert.accept()
        WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.XPATH, f"//div[@id='node-actions-{node.pk}']/button[text()='Uncordon']"))
        assert kubectl("get", "node", node.name, "-o", "jsonpath={.spec.unschedulable}") == "true"

        browser.find_element(By.XPATH, f"//div[@id='node-actions-{node.pk}']/button[text()='Drain']").click()
        WebDriverWait(browser, 5).until(lambda d: d.switch_to.alert)
        assert "evicted" in browser.switch_to.alert.text
        browser.switch_to.alert.accept()
        WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#node-actions-{node.pk} .drain-status"))

        def finished(d):  # the worker drains; the page says so (live, or at the latest on a reload)
            text = d.find_element(By.CSS_SELECTOR, f"#node-actions-{node.pk} .drain-status").text
            if "succeeded" in text or "failed" in text:
                return text
            d.refresh()
            return None

        text = WebDriverWait(browser, 90, poll_frequency=2).until(finished)
        assert "succeeded, 100%" in text, text
        status = browser.find_element(By.CSS_SELECTOR, f"#node-actions-{node.pk} .drain-status")
        status.find_element(By.TAG_NAME, "a").click()  # the drain's own page: its log
        WebDriverWait(browser, 10).until(lambda d: f"cordoned {node.name}" in d.page_source)
        assert "evicted " in browser.page_source
        after = json.loads(kubectl("get", "pods", "-l", "app=web", "-o", "json"))["items"]
        assert all(p["spec"].get("nodeName") != node.name for p in after if not p["metadata"].get("deletionTimestamp"))
        assert not csp_violations(browser)
    finally:
        for name in kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").split():
            kubectl.run("uncordon", name)
