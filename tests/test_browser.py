"""End to end, as a person sees it: a real browser (Debian's headless Chromium) on the real ASGI
server, the live watcher following a real sandbox.  A pod deleted with kubectl disappears from the
open cluster page within 2 seconds, without a reload.  The server runs as `make run` runs it (no
debug pages) and the browser reports no Content-Security-Policy violation on any page."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest
from django.conf import settings as django_settings

from clusters.models import Cluster, ClusterMembership, Pod
from clusters.watcher import ClusterWatch
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations are logged to the console
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def live_server_url():
    """The real ASGI server (daphne) in its own process, on the test database."""
    db = django_settings.DATABASES["default"]
    port = _free_port()
    env = {**os.environ, "PORTAL_DB_CONN_MAX_AGE": "0",
           "PORTAL_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "PORTAL_REDIS_URL": django_settings.REDIS_URL}
    # The server's log goes to a file: a pipe nobody reads fills up and stalls the server.
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
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def csp_violations(browser):
    """What the browser's console said about the Content-Security-Policy since the last call."""
    return [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]


def person(username):
    """A user whose password the server process can check: it hashes with the real settings,
    and the tests' fast MD5 hasher is not among them."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    user = make_user(username)
    user.password = PBKDF2PasswordHasher().encode(f"{username}-password-1", PBKDF2PasswordHasher().salt())
    user.save(update_fields=["password"])
    return user


def log_in(browser, url, user):
    log_in_as(browser, url, user.username, f"{user.username}-password-1")


def log_in_as(browser, url, username, password):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{url}/login/")
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    try:
        WebDriverWait(browser, 10).until(lambda d: "Clusters" in d.title)
    except Exception:
        raise AssertionError(f"login failed; page: {browser.title} {browser.page_source[:3000]}") from None


def test_pages_keep_to_the_content_security_policy(browser, live_server_url):
    """Every kind of page, the admin and the API docs work under the policy and the browser reports
    no violation; the live updates' websocket connects and delivers."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from clusters.events import cluster_changed

    user = person("csp")
    user.is_staff = user.is_superuser = True
    user.save(update_fields=["is_staff", "is_superuser"])
    cluster = Cluster.objects.create(name="csp-alpha", driver="imported", state="active")

    browser.get(f"{live_server_url}/login/")
    assert not csp_violations(browser)
    # The console does report violations: an inline script is refused and said so.
    browser.execute_script("var s = document.createElement('script'); s.textContent = 'window.x = 1'; document.body.appendChild(s);")
    assert browser.execute_script("return window.x === undefined")
    assert any("inline script" in message for message in csp_violations(browser))

    log_in(browser, live_server_url, user)
    WebDriverWait(browser, 10).until(lambda d: "Live updates on" in d.find_element(By.ID, "live-status").text)
    Cluster.objects.filter(pk=cluster.pk).update(state="unavailable")
    cluster_changed(Cluster.objects.get(pk=cluster.pk))  # pushed over the websocket, after commit
    WebDriverWait(browser, 10).until(lambda d: "unavailable" in d.find_element(By.ID, f"cluster-{cluster.pk}").text)
    assert not csp_violations(browser), "dashboard"

    pages = {
        f"/clusters/{cluster.pk}/": lambda d: "Live updates on" in d.find_element(By.ID, "live-status").text,
        "/projects/": lambda d: d.find_elements(By.ID, "np-name"),
        "/admin/": lambda d: "Corral administration" in d.page_source,
        "/admin/clusters/cluster/": lambda d: "csp-alpha" in d.page_source,
        f"/admin/clusters/cluster/{cluster.pk}/change/": lambda d: d.find_elements(By.CSS_SELECTOR, "input[name=_save]"),
        "/api/docs/": lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"),  # rendered by its scripts
        "/api/v1/clusters/": lambda d: "csp-alpha" in d.page_source,
    }
    for path, ready in pages.items():
        browser.get(live_server_url + path)
        WebDriverWait(browser, 20).until(ready)
        assert not csp_violations(browser), path


@pytest.mark.kube
def test_deleted_pod_disappears_from_the_open_page_within_2_seconds(sandbox, kubectl, browser, live_server_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    user = person("ops")
    cluster = Cluster.objects.create(
        name="live-browser", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    ClusterMembership.objects.create(cluster=cluster, user=user, role="cluster-owner")
    kubectl("create", "deployment", "nginx", "--image=nginx:1.27", "--replicas=2")
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    try:
        deadline = time.monotonic() + 60
        while Pod.objects.filter(cluster=cluster, namespace__name=kubectl.namespace, phase="Running").count() < 2:
            assert time.monotonic() < deadline, "pods never reached the database"
            time.sleep(0.2)

        log_in(browser, live_server_url, user)
        assert "live-browser" in browser.page_source

        # Other tests' namespaces share the sandbox: look at this test's namespace only.
        browser.get(f"{live_server_url}/clusters/{cluster.pk}/?namespace={kubectl.namespace}")
        WebDriverWait(browser, 10).until(lambda d: "Live updates on" in d.find_element(By.ID, "live-status").text)
        pod = Pod.objects.filter(cluster=cluster, namespace__name=kubectl.namespace).first()
        assert browser.find_elements(By.ID, f"pod-{pod.uid}")
        browser.execute_script("window.__notReloaded = true;")

        started = time.monotonic()
        kubectl("delete", "pod", pod.name, "--wait=false")
        WebDriverWait(browser, 2, poll_frequency=0.05).until(lambda d: not d.find_elements(By.ID, f"pod-{pod.uid}"))
        elapsed = time.monotonic() - started
        assert elapsed < 2
        assert browser.execute_script("return window.__notReloaded === true;")
        # and the ReplicaSet's replacement appears on the page, live too
        def rows(d):
            return sorted(e.get_attribute("id") for e in d.find_elements(By.CSS_SELECTOR, "#pods tr[id^=pod-]"))

        try:
            WebDriverWait(browser, 20).until(lambda d: len(rows(d)) == 2)
        except Exception:
            stored = sorted(f"pod-{uid}" for uid in Pod.objects.filter(cluster=cluster, namespace__name=kubectl.namespace).values_list("uid", flat=True))
            raise AssertionError(f"page rows {rows(browser)}, database {stored}") from None
        assert not csp_violations(browser)
    finally:
        watch.stop(wait=10)


def test_a_person_manages_a_project_from_the_portal(browser, live_server_url):
    """Create a project, namespaces within its pool, and members, in the browser; the API's
    answers (a pool overdrawn, an unknown user) appear on the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from projects.models import Project

    lead, dev = person("lead"), make_user("dev")
    cluster = Cluster.objects.create(name="alpha", driver="imported", state="active")
    ClusterMembership.objects.create(cluster=cluster, user=lead, role="cluster-owner")
    log_in(browser, live_server_url, lead)

    browser.get(f"{live_server_url}/projects/")
    browser.find_element(By.ID, "np-name").send_keys("web")
    browser.find_element(By.ID, "np-quota").send_keys("limits.cpu: 4\npods: 20")
    browser.find_element(By.ID, "np-default").send_keys("limits.cpu: 2\npods: 10")
    browser.find_element(By.CSS_SELECTOR, "form.api-form button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: "/projects/" in d.current_url and d.current_url.rstrip("/").split("/")[-1].isdigit())
    project = Project.objects.get(cluster=cluster, name="web")
    assert project.resource_quota == {"limits.cpu": "4", "pods": "20"}

    def create_namespace(name):
        field = browser.find_element(By.ID, "ns-name")
        field.clear()
        field.send_keys(name)
        field.submit()

    create_namespace("web-a")
    WebDriverWait(browser, 10).until(lambda d: "web-a" in d.find_element(By.ID, "namespaces").text)
    create_namespace("web-b")
    WebDriverWait(browser, 10).until(lambda d: "web-b" in d.find_element(By.ID, "namespaces").text)
    create_namespace("web-c")  # a third default share of 2 CPUs would overdraw the pool of 4
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".form-errors .error"))
    error = browser.find_element(By.CSS_SELECTOR, ".form-errors").text
    assert "limits.cpu" in error and "left" in error
    assert not project.namespaces.filter(name="web-c").exists()

    browser.find_element(By.ID, "m-user").send_keys("nobody-here")
    browser.find_element(By.ID, "m-user").submit()
    WebDriverWait(browser, 10).until(lambda d: "nobody-here" in d.find_element(By.CSS_SELECTOR, "#members + form .form-errors").text)
    browser.find_element(By.ID, "m-user").clear()
    browser.find_element(By.ID, "m-user").send_keys(dev.username)
    browser.find_element(By.ID, "m-user").submit()
    WebDriverWait(browser, 10).until(lambda d: "user dev" in d.find_element(By.ID, "members").text)
    assert project.memberships.get(user=dev).role == "project-member"

    # Shrinking the pool below what the namespaces hold is refused, saying how much is allocated.
    browser.find_element(By.CSS_SELECTOR, "details summary").click()
    quota = browser.find_element(By.ID, "e-quota")
    quota.clear()
    quota.send_keys("limits.cpu: 2\npods: 20")
    quota.submit()
    WebDriverWait(browser, 10).until(lambda d: "limits.cpu" in d.find_element(By.CSS_SELECTOR, "details .form-errors").text)
    project.refresh_from_db()
    assert project.resource_quota == {"limits.cpu": "4", "pods": "20"}
    quota = browser.find_element(By.ID, "e-quota")
    quota.clear()
    quota.send_keys("limits.cpu: 6\npods: 30")
    quota.submit()
    WebDriverWait(browser, 10).until(lambda d: Project.objects.get(pk=project.pk).resource_quota == {"limits.cpu": "6", "pods": "30"})
    assert not csp_violations(browser)


@pytest.mark.kube
def test_the_walkthrough_in_the_browser(sandbox, kubectl, browser, live_server_url):
    """Deploy nginx, scale it to 3, delete a pod and watch it come back, expose it: all on the
    cluster page, as the seed's walk-through does with kubectl."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from clusters import sync
    from clusters.models import Service

    user = person("walker")
    cluster = Cluster.objects.create(
        name="walk-browser", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    ClusterMembership.objects.create(cluster=cluster, user=user, role="cluster-owner")
    sync.sync(cluster.pk)
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    page = f"{live_server_url}/clusters/{cluster.pk}/?namespace={kubectl.namespace}"

    # Read in one script: rows come and go live, and an element found a moment earlier may be gone.
    def pod_rows(d):
        return d.execute_script("return Array.from(document.querySelectorAll('#pods tr[id^=pod-]'), r => r.id);")

    def running_rows(d):
        return d.execute_script("return Array.from(document.querySelectorAll('#pods tr[id^=pod-]'), r => r.id)"
                                ".filter(id => document.getElementById(id).textContent.includes('Running'));")

    try:
        log_in(browser, live_server_url, user)
        browser.get(page)
        browser.find_element(By.ID, "d-name").send_keys("nginx")
        browser.find_element(By.ID, "d-image").send_keys("nginx:1.27")
        browser.find_element(By.CSS_SELECTOR, "#deploy summary").click()
        assert browser.find_element(By.ID, "d-lim-cpu").get_attribute("placeholder") == "e.g. 500m"  # no project defaults here
        browser.find_element(By.ID, "d-ports").send_keys("80")
        browser.find_element(By.ID, "d-env").send_keys("MODE=demo")
        browser.find_element(By.ID, "d-name").submit()
        WebDriverWait(browser, 10).until(lambda d: "nginx" in d.find_element(By.ID, "workloads").text)
        assert kubectl("get", "deployment", "nginx", "-o", "jsonpath={.spec.template.spec.containers[0].env[0].value} "
                       "{.spec.template.spec.containers[0].ports[0].containerPort}") == "demo 80"
        WebDriverWait(browser, 30).until(lambda d: len(running_rows(d)) == 1)

        workload_id = Pod.objects.filter(cluster=cluster, namespace__name=kubectl.namespace).first().workload_id
        field = browser.find_element(By.ID, f"scale-{workload_id}")
        field.clear()
        field.send_keys("3")
        field.submit()
        WebDriverWait(browser, 30).until(lambda d: len(running_rows(d)) == 3)

        browser.get(page)  # delete buttons come with the page (and its permission check)
        WebDriverWait(browser, 10).until(lambda d: len(pod_rows(d)) == 3)
        before = set(pod_rows(browser))
        doomed = sorted(before)[0]
        browser.find_element(By.CSS_SELECTOR, f"#{doomed} button").click()
        WebDriverWait(browser, 5).until(lambda d: d.switch_to.alert)  # the deletion asks first
        assert "Delete the pod" in browser.switch_to.alert.text
        browser.switch_to.alert.accept()
        WebDriverWait(browser, 10).until(lambda d: doomed not in pod_rows(d))
        WebDriverWait(browser, 30).until(lambda d: len(running_rows(d)) == 3 and len(set(pod_rows(d)) - before) == 1)

        browser.find_element(By.ID, f"expose-{workload_id}").submit()
        WebDriverWait(browser, 10).until(lambda d: Service.objects.filter(cluster=cluster, name="nginx").exists())
        service = Service.objects.get(cluster=cluster, name="nginx")
        result = "#workloads-table-result"  # above the table: a live row may be drawn again under it

        def reported(d):
            box = d.find_element(By.CSS_SELECTOR, result)
            return box.text, box.find_element(By.LINK_TEXT, "open").get_attribute("href")

        text, link = WebDriverWait(browser, 10, ignored_exceptions=[NoSuchElementException, StaleElementReferenceException]).until(reported)
        assert text == f"Created Service nginx (ClusterIP {service.cluster_ip}:80) — open"  # what expose made, in place
        assert link.endswith(f"/services/{service.pk}/")
        endpoints = kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=nginx",
                            "-o", "jsonpath={.items[*].endpoints[*].targetRef.name}").split()
        assert len(endpoints) == 3
        assert not csp_violations(browser)

        def three_endpoints(d):  # read on demand when the page is drawn: look again until the slices are in
            d.get(link)
            return "3 of 3 ready" in d.find_element(By.ID, f"service-endpoints-{service.pk}").text

        WebDriverWait(browser, 30, poll_frequency=1).until(three_endpoints)
        shown = browser.find_element(By.ID, f"service-endpoints-{service.pk}").text
        assert all(name in shown for name in endpoints)
        assert not csp_violations(browser)
    finally:
        watch.stop(wait=10)


def test_the_page_says_why_live_updates_stopped_when_the_account_is_deactivated(browser, live_server_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    user = person("leaver")
    cluster = Cluster.objects.create(name="leaving", driver="imported", state="active")
    ClusterMembership.objects.create(cluster=cluster, user=user, role="cluster-member")
    log_in(browser, live_server_url, user)
    browser.get(f"{live_server_url}/clusters/{cluster.pk}/")
    WebDriverWait(browser, 10).until(lambda d: "Live updates on" in d.find_element(By.ID, "live-status").text)
    user.is_active = False
    user.save()
    WebDriverWait(browser, 5).until(lambda d: "deactivated" in d.find_element(By.ID, "live-status").text)
    assert "Live updates stopped" in browser.find_element(By.ID, "live-status").text
