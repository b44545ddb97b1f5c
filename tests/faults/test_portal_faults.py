"""A running portal (tests/faults/portal_harness.py: `make run`'s processes on their own PostgreSQL,
Redis and sandbox) broken the ways production breaks, for real:

- the cluster watcher SIGKILLed: the supervisor starts it again and it catches up on what changed
  while it was gone, with no resync to help;
- the sandbox's kube-apiserver SIGKILLed in the middle of a resync and started again;
- the Celery worker's task process SIGKILLed in the middle of a sync of a 1,000-pod cluster while
  the cluster changes;
- redis-server SIGKILLed and started again: pages keep answering, work queued before the crash is
  done afterwards, an open page's live updates come back without a reload;
- PostgreSQL restarted: meanwhile pages and the API answer a clear 503, then service comes back by
  itself.

Each ends with the portal's inventory equal to what the cluster's API lists, object by object (uid
and resourceVersion), and no operation left pending or running."""

import os
import shutil
import time

import psutil
import pytest

from clusters.sandbox import Sandbox, SandboxError
from tests.faults.portal_harness import REPO, Portal, wait_for
from tests.kube_fixtures import _session_sandbox_name, require_kube_binaries
from tests.test_browser import browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.kube]
BULK = "bulk"


@pytest.fixture(scope="module")
def own_sandbox():
    """A sandbox of this module's own (12 nodes: room for 1,000 pods): its apiserver gets killed."""
    require_kube_binaries()
    cluster = Sandbox(_session_sandbox_name("faults"))
    try:
        cluster.up(nodes=12)
    except SandboxError as exc:
        pytest.fail(f"could not start the fault tests' sandbox: {exc}", pytrace=False)
    yield cluster
    try:
        cluster.down()
    except SandboxError:
        pass


@pytest.fixture(scope="module")
def portal(own_sandbox):
    var = REPO / "var" / f"faults-{os.getpid()}"
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    running = Portal(var, own_sandbox)
    try:
        running.start()
        running.assert_inventory_exact(timeout=90)  # the watcher's first list
        yield running
    finally:
        running.stop()
        shutil.rmtree(var, ignore_errors=True)


def kubectl(portal, *args, **kwargs):
    return portal.sandbox.kubectl(*args, **kwargs).stdout


def test_a_sigkilled_watcher_is_started_again_and_catches_up(portal):
    kubectl(portal, "create", "namespace", "while-away")
    kubectl(portal, "-n", "while-away", "create", "deployment", "before", "--image=nginx", "--replicas=2")
    portal.assert_inventory_exact()

    watcher = portal.watcher()
    watcher.suspend()  # it sees nothing from here on: every change below happens while it is away
    kubectl(portal, "-n", "while-away", "create", "deployment", "during", "--image=nginx", "--replicas=3")
    kubectl(portal, "-n", "while-away", "scale", "deployment", "before", "--replicas=1")
    kubectl(portal, "-n", "while-away", "label", "deployment", "before", "changed=while-away")
    wait_for(lambda: len(portal.sandbox.api().get("/api/v1/namespaces/while-away/pods")["items"]) == 4, 60,
             "the cluster to make its changes")
    watcher.kill()
    portal.run.wait_for(lambda: portal.run.said("watch exited with code -9"), what="the supervisor to notice")
    again = portal.run.wait_for(lambda: (c := portal.watcher()) and c.pid != watcher.pid and c, what="a new watcher")
    assert again.is_running()

    portal.assert_inventory_exact(timeout=60)  # no resync runs (PORTAL_RESYNC_SECONDS=3600): the watcher caught up
    assert not portal.sql("SELECT id FROM portal_operation WHERE kind = 'sync'")


def test_the_apiserver_killed_during_a_resync_and_started_again(portal):
    sandbox = portal.sandbox
    kubectl(portal, "create", "namespace", "apiserver-dies")
    kubectl(portal, "-n", "apiserver-dies", "create", "deployment", "web", "--image=nginx", "--replicas=20")
    wait_for(lambda: len(sandbox.api().get("/api/v1/namespaces/apiserver-dies/pods")["items"]) == 20, 60, "20 pods")
    worker = portal.start_worker()
    try:
        apiserver = psutil.Process(sandbox._state()["components"]["kube-apiserver"]["pid"])
        apiserver.suspend()  # holds the resync in the middle of its reads
        started = portal.api("POST", f"/api/v1/clusters/{portal.cluster_id}/sync/")
        assert started.status_code == 202, started.text
        op = started.json()["id"]
        wait_for(lambda: any("reading the inventory" in m for m in portal.operation(op)["log"]), 60, "the resync to read")
        time.sleep(1)
        apiserver.kill()
        apiserver.wait(10)
        done = portal.wait_for_operation(op)
        print("resync whose apiserver died:", done)
        assert done["status"] == "failed" and "error talking to the API server" in done["error"], done  # the reason, not stuck

        sandbox.start_apiserver()
        kubectl(portal, "-n", "apiserver-dies", "scale", "deployment", "web", "--replicas=5")
        kubectl(portal, "-n", "apiserver-dies", "create", "deployment", "after", "--image=nginx")

        def sync_succeeds():
            answer = portal.api("POST", f"/api/v1/clusters/{portal.cluster_id}/sync/")
            if answer.status_code != 202:
                return None  # e.g. still marked unavailable until the next health check
            return portal.wait_for_operation(answer.json()["id"])["status"] == "succeeded"

        wait_for(sync_succeeds, 120, "a resync after the restart to succeed")
        portal.assert_inventory_exact(timeout=60)
    finally:
        portal.kill_worker(worker)


@pytest.mark.browser
def test_redis_killed_and_started_again(portal, browser):  # noqa: F811 - the fixture imported above
    """Pages keep answering while Redis is gone; a task queued before the crash is still done
    (append-only file); the open page's live updates come back by themselves, without a reload."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_browser import log_in_as

    kubectl(portal, "create", "namespace", "redis-dies")
    kubectl(portal, "-n", "redis-dies", "create", "deployment", "web", "--image=nginx", "--replicas=2")
    portal.assert_inventory_exact()
    log_in_as(browser, portal.url, portal.username, portal.password)
    browser.get(f"{portal.url}/clusters/{portal.cluster_id}/?namespace=redis-dies")
    live = lambda d: d.find_element(By.ID, "live-status").text  # noqa: E731
    WebDriverWait(browser, 20).until(lambda d: "Live updates on" in live(d))
    browser.execute_script("window.__notReloaded = true;")

    # Queued with no worker running: the task waits in Redis.
    queued = portal.api("POST", f"/api/v1/clusters/{portal.cluster_id}/sync/")
    assert queued.status_code == 202, queued.text
    op = queued.json()["id"]
    time.sleep(1.5)  # the append-only file is written to disk every second

    redis_pid = int((portal.var / "redis" / "redis.pid").read_text())
    psutil.Process(redis_pid).kill()
    wait_for(lambda: not psutil.pid_exists(redis_pid), 10, "redis-server to die")

    session = portal.browser_session()
    for path in (f"/clusters/{portal.cluster_id}/", "/", "/projects/", "/admin/clusters/cluster/"):
        page = session.get(portal.url + path, timeout=30)
        assert page.status_code == 200, (path, page.status_code, page.text[:500])
    listed = portal.api("GET", "/api/v1/clusters/")
    assert listed.status_code == 200 and listed.json()["count"] == 1
    refused = portal.api("POST", f"/api/v1/clusters/{portal.cluster_id}/sync/")
    assert refused.status_code == 503 and "try again" in refused.json()["detail"], refused.text
    WebDriverWait(browser, 30).until(lambda d: "reconnecting" in live(d))

    services_redis = portal.restart_redis()
    assert services_redis == portal.redis_url  # same port, same data
    WebDriverWait(browser, 60).until(lambda d: "Live updates on" in live(d))

    worker = portal.start_worker()
    done = portal.wait_for_operation(op)
    portal.kill_worker(worker)
    assert done["status"] == "succeeded", f"{done}\n{portal.worker_logs()}"
    assert len(portal.sql("SELECT id FROM portal_operation")) == len(set(portal.sql("SELECT id FROM portal_operation")))

    # Live again: a pod deleted with kubectl leaves the open page, no reload.
    pods = portal.sandbox.api().get("/api/v1/namespaces/redis-dies/pods")["items"]
    uid = pods[0]["metadata"]["uid"]
    assert browser.find_elements(By.ID, f"pod-{uid}")
    kubectl(portal, "-n", "redis-dies", "delete", "pod", pods[0]["metadata"]["name"], "--wait=false")
    try:
        WebDriverWait(browser, 15).until(lambda d: not d.find_elements(By.ID, f"pod-{uid}"))
    except Exception:
        raise AssertionError(f"the deleted pod stayed on the page ({live(browser)!r}); run.log:\n"
                             + "\n".join(portal.run.lines[-80:])) from None
    assert browser.execute_script("return window.__notReloaded === true;")
    portal.assert_inventory_exact()


def test_postgresql_restarted(portal):
    """While the database is down, pages and the API answer a clear 503 (no 500, no stack trace);
    when it is back, service resumes by itself and the inventory catches up."""
    session = portal.browser_session()
    kubectl(portal, "create", "namespace", "db-restart")
    portal.assert_inventory_exact()

    portal.stop_postgres()
    page = session.get(f"{portal.url}/clusters/{portal.cluster_id}/", timeout=30)
    assert page.status_code == 503, (page.status_code, page.text[:1000])
    assert "cannot reach the database" in page.text and "Traceback" not in page.text
    assert page.headers["Retry-After"]
    answer = portal.api("GET", "/api/v1/clusters/")
    assert answer.status_code == 503, answer.text[:1000]
    assert answer.json() == {"detail": "Corral cannot reach the database right now; try again in a few seconds."}
    assert requests_status(portal, "/readyz") == 503
    assert requests_status(portal, "/healthz") == 200  # the process is up: no restart for an outage
    # The cluster changes meanwhile; the watcher cannot write it down yet.
    kubectl(portal, "-n", "db-restart", "create", "deployment", "while-down", "--image=nginx", "--replicas=2")
    time.sleep(3)

    portal.start_postgres()
    wait_for(lambda: requests_status(portal, "/readyz") == 200, 30, "the portal to answer again")
    assert session.get(f"{portal.url}/clusters/{portal.cluster_id}/", timeout=30).status_code == 200
    assert portal.api("GET", "/api/v1/clusters/").status_code == 200
    portal.assert_inventory_exact(timeout=90)
    assert portal.watcher().is_running()


def test_the_worker_killed_in_the_middle_of_a_sync_of_1000_pods(portal):
    sandbox = portal.sandbox
    kubectl(portal, "create", "namespace", BULK)
    kubectl(portal, "-n", BULK, "create", "deployment", "many", "--image=nginx", "--replicas=1000")

    def running_pods():
        pods = sandbox.api().get(f"/api/v1/namespaces/{BULK}/pods?labelSelector=app%3Dmany")["items"]
        return sum(1 for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"))

    began = time.monotonic()
    wait_for(lambda: running_pods() == 1000, 300, "1,000 running pods")
    print(f"1,000 pods running after {time.monotonic() - began:.0f}s")
    portal.assert_inventory_exact(timeout=120)
    print(f"and in the inventory after {time.monotonic() - began:.0f}s")

    for earlier in portal.workers:  # only this test's worker may take the sync
        if earlier.poll() is None:
            portal.kill_worker(earlier)
    worker = portal.start_worker()
    try:
        for _attempt in range(5):  # until a sync is caught before it ends (a busy machine may finish one first)
            pool = psutil.Process(worker.pid).children()
            assert len(pool) == 1
            started = portal.api("POST", f"/api/v1/clusters/{portal.cluster_id}/sync/")
            assert started.status_code == 202, started.text
            op = started.json()["id"]
            wait_for(lambda op=op: any("reading the inventory" in m for m in portal.operation(op)["log"]), 60, "the sync to read")
            pool[0].suspend()  # the process running the task, frozen where it is
            time.sleep(1)  # a commit it sent just before is seen, not missed
            if portal.operation(op)["status"] == "running":
                break
            pool[0].resume()
        else:
            raise AssertionError("five syncs in a row ended before the test could stop them")
        # The cluster moves while the sync is half done: 400 pods go, a new workload comes.
        kubectl(portal, "-n", BULK, "scale", "deployment", "many", "--replicas=600")
        kubectl(portal, "-n", BULK, "create", "deployment", "newcomer", "--image=nginx", "--replicas=3")
        pool[0].kill()
        killed = time.monotonic()
        done = portal.wait_for_operation(op, timeout=300)
        print(f"redelivered sync finished {time.monotonic() - killed:.0f}s after the kill")
        assert done["status"] == "succeeded", f"{done}\n{portal.worker_logs()}"
        assert "started again: the worker that ran it was lost" in done["log"]
        wait_for(lambda: running_pods() == 600, 120, "600 running pods")
        portal.assert_inventory_exact(timeout=120)
    finally:
        portal.kill_worker(worker)
        kubectl(portal, "delete", "namespace", BULK, "--wait=false")


def requests_status(portal, path):
    import requests

    try:
        return requests.get(portal.url + path, timeout=10).status_code
    except requests.RequestException:
        return None
