"""The lifecycle in a real browser against a real sandbox and a real Celery worker, without the
admin: create a sandbox cluster from the form, follow it to active, rename it, sync it now, remove it
after the confirmation page; the sandbox's processes are gone at the end."""

import time
import uuid

import pytest

from clusters.models import Cluster
from portal.models import GlobalRole, GlobalRoleBinding
from tests.kube_fixtures import require_kube_binaries
from tests.test_browser import browser, csp_violations, live_server_url, log_in, person  # noqa: F401 - fixtures

pytestmark = [pytest.mark.kube, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker():
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app

    app.conf.task_always_eager = False
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        yield


def test_create_rename_sync_and_remove_a_sandbox_from_the_portal(worker, browser, live_server_url):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from clusters.drivers import SandboxDriver

    require_kube_binaries()
    user = person("builder")
    for role in (GlobalRole.CREATE_CLUSTERS, GlobalRole.USE_SANDBOX):
        GlobalRoleBinding.objects.create(user=user, role=role)
    name = f"life-{uuid.uuid4().hex[:6]}"
    log_in(browser, live_server_url, user)
    browser.find_element(By.ID, "create-cluster").click()
    browser.find_element(By.ID, "c-name").send_keys(name)
    nodes = browser.find_element(By.ID, "c-nodes")
    nodes.clear()
    nodes.send_keys("1")
    nodes.submit()
    WebDriverWait(browser, 10).until(lambda d: "/clusters/" in d.current_url and d.current_url.rstrip("/").split("/")[-1].isdigit())
    cluster = Cluster.objects.get(name=name)
    assert cluster.driver == "sandbox" and cluster.driver_config == {"nodes": 1}
    assert cluster.memberships.get(user=user).role == "cluster-owner"
    sandbox = SandboxDriver()._sandbox(cluster)
    try:
        # Followed live on the open page, to active.
        WebDriverWait(browser, 180, poll_frequency=0.5).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f"#cluster-{cluster.pk} [data-field=state]").text == "active")
        assert sandbox.is_running()

        browser.get(f"{live_server_url}/clusters/{cluster.pk}/")
        browser.find_element(By.CSS_SELECTOR, "#rename summary").click()
        field = browser.find_element(By.ID, "r-name")
        field.clear()
        field.send_keys(f"{name}-renamed")
        field.submit()
        from selenium.common.exceptions import StaleElementReferenceException

        # The page reloads under the wait: a heading read as it goes is read again.
        WebDriverWait(browser, 10, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: d.find_element(By.TAG_NAME, "h1").text == f"{name}-renamed")
        assert Cluster.objects.get(pk=cluster.pk).name == f"{name}-renamed"

        browser.find_element(By.ID, "sync-now").click()
        WebDriverWait(browser, 10).until(lambda d: "/operations/" in d.current_url)
        WebDriverWait(browser, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-field=status]").text == "succeeded")

        browser.get(f"{live_server_url}/clusters/{cluster.pk}/")
        browser.find_element(By.ID, "remove").click()
        consequences = browser.find_element(By.ID, "consequences").text
        assert f"The sandbox “{name}-renamed” is torn down" in consequences and "1 nodes" in consequences
        browser.find_element(By.ID, "confirm-remove").click()
        WebDriverWait(browser, 10).until(lambda d: "/operations/" in d.current_url)
        WebDriverWait(browser, 120).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-field=status]").text == "succeeded")
        assert not Cluster.objects.filter(pk=cluster.pk).exists()
        deadline = time.monotonic() + 30
        while sandbox.is_running():
            assert time.monotonic() < deadline, "the sandbox kept running after its removal"
            time.sleep(0.5)
        assert not csp_violations(browser)
    finally:
        if sandbox.is_running():
            sandbox.down()
