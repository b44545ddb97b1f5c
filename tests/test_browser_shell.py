"""The page shell and the live core in headless Chromium, on the real ASGI server:

- a cluster row inserted live on the dashboard (a newly provisioned cluster) is the same DOM as the
  row after a reload: actions, state tint, figures, dates;
- a page survives its Redis being restarted: while it is gone the page says live updates are paused,
  what changed meanwhile appears when it is back (the page catches up), and later changes arrive
  live, all without a reload (a server of this test's own, on a redis-server of its own, so the
  suite's Redis is never stopped);
- at 390 px wide the dashboard, a cluster page and a project page do not overflow, the menu folds
  behind a button and Log out is reachable; screenshots go to $CORRAL_ARTIFACTS_DIR (default
  var/artifacts/screenshots), which CI keeps."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from clusters.events import cluster_changed
from clusters.models import Cluster, ClusterMembership, Namespace, Node, Pod, Workload
from tests.conftest import make_user
from tests.test_browser import ROOT, _free_port, browser, csp_violations, live_server_url, log_in, person  # noqa: F401 - fixtures
from tools import services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def artifacts_dir():
    default = Path(os.environ.get("CORRAL_VAR_DIR") or Path(ROOT) / "var") / "artifacts" / "screenshots"
    path = Path(os.environ.get("CORRAL_ARTIFACTS_DIR") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait(driver, seconds, predicate, what):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.1).until(predicate)
    except Exception:
        status = driver.execute_script("var s = document.getElementById('live-status'); return s ? s.textContent : ''")
        raise AssertionError(f"timed out after {seconds}s waiting for {what}; live status {status!r}") from None


def live_status(driver):
    return driver.execute_script("return document.getElementById('live-status').textContent")


def row_html(driver, pk):
    return driver.execute_script(f"var r = document.getElementById('cluster-{pk}'); return r ? r.outerHTML : null")


def fill(cluster, nodes=2, pods=3):
    """Inventory for a cluster's figures: nodes (one not ready when asked) and running pods."""
    namespace = Namespace.objects.create(cluster=cluster, uid=f"ns-{cluster.pk}", name="default")
    for i in range(nodes):
        Node.objects.create(cluster=cluster, uid=f"node-{cluster.pk}-{i}", name=f"node-{i}", ready=True,
                            cpu_allocatable_m=4000, memory_allocatable_bytes=8 * 2**30)
    workload = Workload.objects.create(cluster=cluster, namespace=namespace, uid=f"w-{cluster.pk}", name="web", kind="deployment",
                                       desired_replicas=pods, ready_replicas=pods)
    for i in range(pods):
        Pod.objects.create(cluster=cluster, namespace=namespace, uid=f"pod-{cluster.pk}-{i}", name=f"web-{i}", phase="Running",
                           workload=workload, node_name="node-0", cpu_request_m=250, memory_request_bytes=2**28)


def test_a_live_inserted_row_equals_the_reloaded_row(browser, live_server_url):  # noqa: F811
    user = person("fleet")
    user.is_superuser = True
    user.save(update_fields=["is_superuser"])
    Cluster.objects.create(name="m-existing", driver="imported", state="active")
    log_in(browser, live_server_url, user)
    wait(browser, 10, lambda d: live_status(d) == "Live updates on", "live updates")
    browser.execute_script("window.__notReloaded = true;")

    # A sandbox being provisioned appears, then becomes active with its nodes and pods.
    cluster = Cluster.objects.create(name="n-provisioned", driver="sandbox", state="provisioning")
    cluster_changed(cluster, event="cluster.created")
    wait(browser, 10, lambda d: row_html(d, cluster.pk), "the new row")
    assert "state-provisioning" in row_html(browser, cluster.pk)
    fill(cluster)
    Cluster.objects.filter(pk=cluster.pk).update(state="active", kubernetes_version="v1.31.0", last_seen=timezone.now())
    cluster_changed(Cluster.objects.get(pk=cluster.pk))
    wait(browser, 10, lambda d: "state-active" in (row_html(d, cluster.pk) or "") and "2 / 2" in row_html(d, cluster.pk), "the row to fill")

    live = row_html(browser, cluster.pk)
    order = browser.execute_script("return Array.prototype.map.call(document.querySelectorAll('#cluster-rows tr'), function (r) { return r.id; })")
    assert browser.execute_script("return window.__notReloaded === true;")
    browser.refresh()
    wait(browser, 10, lambda d: live_status(d) == "Live updates on", "live updates after the reload")
    assert row_html(browser, cluster.pk) == live  # the same DOM, byte for byte
    browser.save_screenshot(str(artifacts_dir() / "dashboard-wide.png"))
    assert browser.execute_script("return Array.prototype.map.call(document.querySelectorAll('#cluster-rows tr'), function (r) { return r.id; })") == order
    for part in ("Remove…", ">Sync<", "state state-active", "0.75 / 8", "768.0 MiB / 16.0 GiB", ">3<", "just now", 'class="when"'):
        assert part in live, (part, live)
    # Dates: the browser's words are the server's (the `when` filter), whatever the distance.
    from datetime import timedelta

    from portal.templatetags.corral import when

    now = timezone.now()
    for delta in (timedelta(seconds=5), timedelta(minutes=5, seconds=2), timedelta(hours=3, minutes=1), timedelta(days=2, hours=1),
                  timedelta(days=9, hours=1), timedelta(days=40), timedelta(days=400), -timedelta(days=2, hours=1)):
        moment = now - delta
        server = str(when(moment)).rsplit('">', 1)[1].removesuffix("</time>")
        browser_words, title = browser.execute_script(
            "var el = window.Corral.when(arguments[0]); return [el.textContent, el.title];", moment.isoformat())
        assert browser_words == server, (delta, browser_words, server)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+", title), title  # the filter's format, in local time
    # The health strip followed too.
    assert "2" == browser.find_element("css selector", "#fleet-health .tile .figure").text
    assert not csp_violations(browser)


@pytest.fixture
def own_redis():
    """A redis-server of this test's own, as `make run` starts it (tools/services.py)."""
    var = Path(tempfile.mkdtemp(prefix="corral-redis-"))
    url = services.ensure_redis(var)
    yield var, url
    services.stop_redis(var)
    shutil.rmtree(var, ignore_errors=True)


@pytest.fixture
def server_on_own_redis(own_redis):
    """Daphne on the test database and on ``own_redis``."""
    var, redis_url = own_redis
    db = django_settings.DATABASES["default"]
    port = _free_port()
    env = {**os.environ, "PORTAL_DB_CONN_MAX_AGE": "0", "PORTAL_REDIS_TIMEOUT_SECONDS": "2",
           "PORTAL_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "PORTAL_REDIS_URL": redis_url}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                raise AssertionError(f"daphne did not start: {log.read().decode()[-2000:]}") from None
            time.sleep(0.2)
    yield url, var, redis_url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def test_a_page_survives_redis_being_restarted_and_catches_up(browser, server_on_own_redis, monkeypatch):  # noqa: F811
    from channels_redis.core import RedisChannelLayer

    from portal import events

    url, var, redis_url = server_on_own_redis
    # This test's events go to the server's Redis (the suite's is another one).
    layer = RedisChannelLayer(hosts=[{"address": redis_url}], prefix="corral:channels")
    monkeypatch.setattr(events, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(events, "_outage", {"until": 0.0, "dropped": 0})

    user = person("steady")
    alpha = Cluster.objects.create(name="alpha", driver="imported", state="active")
    ClusterMembership.objects.create(cluster=alpha, user=user, role="cluster-owner")
    log_in(browser, url, user)
    wait(browser, 10, lambda d: live_status(d) == "Live updates on", "live updates")
    browser.execute_script("window.__notReloaded = true;")

    assert services.stop_redis(var)
    wait(browser, 30, lambda d: "reconnecting" in live_status(d), "the page to say live updates are paused")

    # While Redis is down: changes whose live events are lost (nobody can deliver them).
    Cluster.objects.filter(pk=alpha.pk).update(state="unavailable", last_error="connection refused")
    bravo = Cluster.objects.create(name="bravo", driver="imported", state="active")
    ClusterMembership.objects.create(cluster=bravo, user=user, role="cluster-owner")
    fill(bravo, nodes=1, pods=2)
    stranger = Cluster.objects.create(name="charlie", driver="imported", state="active")  # not theirs
    ClusterMembership.objects.create(cluster=stranger, user=make_user("someone"), role="cluster-owner")

    assert services.ensure_redis(var) == redis_url  # the same port
    wait(browser, 60, lambda d: live_status(d) == "Live updates on", "live updates to come back")
    wait(browser, 10, lambda d: "unavailable" in d.find_element("id", f"cluster-{alpha.pk}").text, "alpha's change while away")
    wait(browser, 10, lambda d: row_html(d, bravo.pk), "the cluster created while away")
    assert "1 / 1" in row_html(browser, bravo.pk)
    assert row_html(browser, stranger.pk) is None
    assert browser.execute_script("return window.__notReloaded === true;")

    # Later changes arrive live again, without a reload: a state and a new cluster's figures.
    Cluster.objects.filter(pk=alpha.pk).update(state="active", last_error="")
    cluster_changed(Cluster.objects.get(pk=alpha.pk))
    wait(browser, 15, lambda d: "state-active" in row_html(d, alpha.pk), "a change after the restart")
    Node.objects.create(cluster=bravo, uid="late-node", name="late", ready=True, cpu_allocatable_m=1000)
    cluster_changed(Cluster.objects.get(pk=bravo.pk))
    wait(browser, 15, lambda d: "2 / 2" in row_html(d, bravo.pk), "bravo's new node")
    assert browser.execute_script("return window.__notReloaded === true;")
    assert not csp_violations(browser)


NARROW = 390


def test_at_390_px_nothing_overflows_and_every_action_is_reachable(browser, live_server_url):  # noqa: F811
    from selenium.webdriver.common.by import By

    from projects.models import Project, ProjectMembership

    user = person("phone")
    cluster = Cluster.objects.create(name="pocket-cluster-with-a-rather-long-name", driver="imported", state="unavailable",
                                     last_error="the API server at https://10.0.0.1:6443 refused the connection: " + "x" * 120)
    ClusterMembership.objects.create(cluster=cluster, user=user, role="cluster-owner")
    fill(cluster)
    project = Project.objects.create(cluster=cluster, name="web")
    ProjectMembership.objects.create(project=project, user=user, role="project-owner")
    Namespace.objects.filter(cluster=cluster).update(project=project)

    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": NARROW, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    shots = artifacts_dir()
    log_in(browser, live_server_url, user)
    for name, path in (("dashboard", "/"), ("cluster", f"/clusters/{cluster.pk}/"), ("project", f"/projects/{project.pk}/")):
        browser.get(live_server_url + path)
        wait(browser, 10, lambda d: d.execute_script("return document.readyState") == "complete", name)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        browser.save_screenshot(str(shots / f"390-{name}.png"))
        assert width <= NARROW, f"{name}: the page is {width} px wide at {NARROW} px"
        # Every button and link is on screen, or inside a box that scrolls sideways to it.
        unreachable = browser.execute_script("""
            var out = [];
            document.querySelectorAll('main button, main a, main input, main select, main textarea').forEach(function (el) {
              var r = el.getBoundingClientRect();
              if (!r.width || !r.height || (r.left >= 0 && r.right <= window.innerWidth + 1)) return;
              for (var p = el.parentElement; p; p = p.parentElement) {
                if (p.scrollWidth > p.clientWidth && /auto|scroll/.test(getComputedStyle(p).overflowX)) return;
              }
              out.push(el.outerHTML.slice(0, 120));
            });
            return out;""")
        assert not unreachable, f"{name}: out of reach at {NARROW} px: {unreachable}"

        # The navigation folds behind the menu button; Log out is in it.
        log_out = browser.find_element(By.ID, "log-out")
        assert not log_out.is_displayed()
        browser.find_element(By.ID, "menu-toggle").click()
        wait(browser, 5, lambda d: d.find_element(By.ID, "log-out").is_displayed(), "the menu to open")
        browser.save_screenshot(str(shots / f"390-{name}-menu.png"))
        assert browser.execute_script("return document.documentElement.scrollWidth") <= NARROW
        assert browser.find_element(By.CSS_SELECTOR, "nav a[aria-current=page]").is_displayed()
        assert not csp_violations(browser), name

    # The system's dark theme is followed.
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    browser.get(live_server_url + "/")
    assert browser.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
    browser.save_screenshot(str(shots / "390-dashboard-dark.png"))
    browser.find_element(By.ID, "menu-toggle").click()
    browser.find_element(By.ID, "log-out").click()
    wait(browser, 10, lambda d: "/login/" in d.current_url, "the log-in page after logging out")
    browser.save_screenshot(str(shots / "390-logged-out.png"))
