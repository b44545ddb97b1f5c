"""The inventory pages in a real browser (headless Chromium) against a real sandbox followed by the
live watcher: a live-inserted pod row is the same DOM as that row after a reload (only the relative
date words may differ), every name is a link to its page, the breadcrumbs lead back up, and a detail
page's tables follow the cluster live."""

import re
import time

import pytest

from clusters.models import ClusterMembership, Node, Pod, Workload
from clusters.watcher import ClusterWatch
from tests.kube_fixtures import imported_cluster
from tests.test_browser import browser, csp_violations, live_server_url, log_in, person  # noqa: F401 - fixtures
from tests.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.kube, pytest.mark.django_db(transaction=True)]


def _normalised(html):
    """A row's HTML with the relative date words taken out (they change as time passes)."""
    return re.sub(r'(<time class="when"[^>]*>)[^<]*(</time>)', r"\1…\2", html)


def _outer(driver, element_id):
    return driver.execute_script("var el = document.getElementById(arguments[0]); return el ? el.outerHTML : null;", element_id)


def _steady(driver, element_id, ready, seconds=1.0, timeout=30):
    """The row's outerHTML once it satisfies ``ready`` and has stopped changing for ``seconds``."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        html = _outer(driver, element_id)
        if html != last:
            last, since = html, time.monotonic()
        elif html and ready(html) and time.monotonic() - since >= seconds:
            return html
        time.sleep(0.1)
    raise AssertionError(f"row {element_id} never settled: {last}")


def test_a_live_inserted_pod_row_equals_the_row_after_reload_and_names_lead_to_their_pages(sandbox, kubectl, browser, live_server_url):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    user = person("inventory-owner")
    cluster = imported_cluster(sandbox, "inventory-live")
    ClusterMembership.objects.create(cluster=cluster, user=user, role="cluster-owner")
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    try:
        ns = kubectl.namespace
        kubectl("create", "deployment", "web", "--image=nginx:1.27", "--replicas=1")
        workload = wait_for(lambda: Workload.objects.filter(cluster=cluster, namespace__name=ns, name="web", ready_replicas=1).first(),
                         60, "the deployment at 1 of 1")
        first = wait_for(lambda: Pod.objects.filter(cluster=cluster, namespace__name=ns, phase="Running").first(), 60, "its pod running")

        log_in(browser, live_server_url, user)
        page = f"{live_server_url}/clusters/{cluster.pk}/?namespace={ns}"
        browser.get(page)
        WebDriverWait(browser, 10).until(lambda d: "Live updates on" in d.find_element(By.ID, "live-status").text)
        browser.execute_script("window.__notReloaded = true;")

        # A new pod appears live; its row, once settled, is the row a reload renders.
        kubectl("scale", "deployment", "web", "--replicas=2")
        second = wait_for(lambda: Pod.objects.filter(cluster=cluster, namespace__name=ns, workload=workload).exclude(pk=first.pk).first(),
                       30, "the second pod")
        wait_for(lambda: Pod.objects.filter(pk=second.pk, phase="Running", ready=True).exists(), 60, "the second pod ready")
        row_id = f"pod-{second.uid}"
        live = _steady(browser, row_id, lambda html: "Running" in html and ">yes<" in html and "data-method=\"DELETE\"" in html)
        assert browser.execute_script("return window.__notReloaded === true;"), "the page was reloaded"
        browser.get(page)
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, row_id))
        reloaded = _outer(browser, row_id)
        assert _normalised(live) == _normalised(reloaded), f"live:\n{live}\nreloaded:\n{reloaded}"
        for name in ("workload", "node", "namespace"):
            assert browser.find_elements(By.CSS_SELECTOR, f"#{name}s tr a[href^='/{name}s/']"), f"no links in the {name} table"

        # Every name leads to its page; the breadcrumbs lead back up.
        browser.find_element(By.CSS_SELECTOR, f"#{row_id} th a").click()
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "nav.crumbs"))
        assert browser.current_url.endswith(f"/pods/{second.pk}/")
        crumbs = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "nav.crumbs li")]
        assert crumbs == ["Clusters", "inventory-live", ns, "web", second.name], crumbs
        node = Node.objects.get(cluster=cluster, name=Pod.objects.get(pk=second.pk).node_name)
        assert browser.find_element(By.CSS_SELECTOR, f"#pod-facts a[href='/nodes/{node.pk}/']").text == node.name
        browser.find_element(By.LINK_TEXT, "web").click()  # the workload's crumb
        WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith(f"/workloads/{workload.pk}/"))
        WebDriverWait(browser, 10).until(lambda d: "Live updates on" in d.find_element(By.ID, "live-status").text)

        # The workload page's pod table follows the cluster: a deleted pod goes, its replacement comes.
        browser.execute_script("window.__notReloaded = true;")
        kubectl("delete", "pod", first.name, "--wait=false")
        WebDriverWait(browser, 5, poll_frequency=0.05).until(lambda d: not d.find_elements(By.ID, f"pod-{first.uid}"))
        WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#workload-pods tr[data-row=pod]")) == 2)
        assert browser.execute_script("return window.__notReloaded === true;")

        # Held below its count by a quota, the workload's page says why, live, within 5 seconds.
        kubectl("create", "quota", "two-pods", "--hard=pods=2")
        wait_for(lambda: kubectl("get", "quota", "two-pods", "-o", "jsonpath={.status.used.pods}").strip() == "2", 30, "the quota's usage")
        started = time.monotonic()
        kubectl("scale", "deployment", "web", "--replicas=3")
        why = f"#workload-{workload.uid} [data-field=why]"
        WebDriverWait(browser, 5, poll_frequency=0.05).until(
            lambda d: "used up" in d.execute_script("var el = document.querySelector(arguments[0]); return el ? el.textContent : '';", why))
        assert time.monotonic() - started < 5
        assert "two-pods" in browser.find_element(By.CSS_SELECTOR, why).text
        assert "3" in browser.find_element(By.CSS_SELECTOR, f"#workload-{workload.uid} [data-field=ready]").text
        assert browser.execute_script("return window.__notReloaded === true;")

        browser.find_element(By.CSS_SELECTOR, "nav.crumbs a[href^='/namespaces/']").click()
        WebDriverWait(browser, 10).until(lambda d: "Namespace " + ns in d.find_element(By.TAG_NAME, "h1").text)
        browser.get(f"{live_server_url}/nodes/{node.pk}/")
        WebDriverWait(browser, 10).until(lambda d: "Node " + node.name in d.find_element(By.TAG_NAME, "h1").text)
        assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "nav.crumbs li")] == ["Clusters", "inventory-live", "Nodes", node.name]

        # The explorer: the namespace chosen once is remembered; columns sort; the filter hides rows.
        browser.get(f"{live_server_url}/clusters/{cluster.pk}/explore/pods/?scope=namespace:{ns}")
        browser.get(f"{live_server_url}/clusters/{cluster.pk}/explore/workloads/")
        assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#explore-rows th a")] == ["web"]
        browser.get(f"{live_server_url}/clusters/{cluster.pk}/explore/pods/")
        assert browser.find_element(By.CSS_SELECTOR, "#scope option:checked").text == ns

        def names(d):
            return [e.text for e in d.find_elements(By.CSS_SELECTOR, "#explore-rows tr[data-row=pod]") if e.is_displayed()]

        WebDriverWait(browser, 10).until(lambda d: len(names(d)) == 2)
        header = browser.find_element(By.XPATH, "//table[@id='explore-rows-table']//th[normalize-space()='Name']")
        header.click()
        ascending = [row.split()[1] for row in names(browser)]
        header.click()
        assert [row.split()[1] for row in names(browser)] == list(reversed(ascending)) and ascending == sorted(ascending)
        browser.find_element(By.ID, "explore-filter").send_keys(ascending[0][-5:])
        WebDriverWait(browser, 5).until(lambda d: len(names(d)) == 1)
        # Its counts follow the cluster too.
        assert browser.find_element(By.CSS_SELECTOR, "[data-count=pods]").text == "2"
        kubectl("scale", "deployment", "web", "--replicas=1")
        WebDriverWait(browser, 15).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-count=pods]").text == "1")
        assert not csp_violations(browser)
    finally:
        watch.stop(wait=10)
