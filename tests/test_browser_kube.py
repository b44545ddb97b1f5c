"""A pod's logs (following), a shell and the YAML view with edit-and-apply, in a real browser on
the real ASGI server against a real sandbox, through Corral's proxy with the page's session, under
the Content-Security-Policy."""

import uuid

import pytest

from clusters import sync
from clusters.models import Cluster, Namespace, Pod
from projects import reconciler
from projects.models import Project, ProjectMembership
from tests.test_browser import browser, csp_violations, live_server_url, log_in, person  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.kube, pytest.mark.django_db(transaction=True)]


def test_logs_shell_and_yaml_pages_through_the_proxy(sandbox, kubectl, browser, live_server_url):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cluster = Cluster.objects.create(
        name=f"pages-{uuid.uuid4().hex[:4]}", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    kubectl("run", "shell", "--image=busybox", "--restart=Never", "--labels=tier=web")
    kubectl("wait", "--for=condition=Ready", "pod/shell", "--timeout=60s")
    sync.sync(cluster.pk)
    project = Project.objects.create(cluster=cluster, name="web")
    Namespace.objects.filter(cluster=cluster, name=kubectl.namespace).update(project=project)
    user = person(f"dev-{uuid.uuid4().hex[:4]}")
    ProjectMembership.objects.create(project=project, user=user, role="project-member")
    reconciler.reconcile(cluster.pk)
    pod = Pod.objects.get(cluster=cluster, namespace__name=kubectl.namespace, name="shell")

    log_in(browser, live_server_url, user)
    browser.get(f"{live_server_url}/pods/{pod.pk}/logs/")
    WebDriverWait(browser, 20).until(lambda d: "simulated container log" in d.find_element(By.ID, "log").text)
    marker = f"followed-{uuid.uuid4().hex[:6]}"
    sandbox.append_pod_log(marker)
    WebDriverWait(browser, 20).until(lambda d: marker in d.find_element(By.ID, "log").text)
    browser.find_element(By.ID, "log-search").send_keys(marker)
    assert browser.find_element(By.ID, "log").text.strip() == browser.find_element(By.ID, "log").text.strip().split("\n")[-1]
    assert not csp_violations(browser), "logs page"

    browser.get(f"{live_server_url}/pods/{pod.pk}/shell/")
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#shell-container option"))
    # An interactive shell, typed into like a person would (the page's default command, sh). Not a
    # one-shot `echo` with a TTY: kwok (v0.8.0, execInContainerWithTTY) closes the pty as soon as
    # the command exits, before its tunnel has copied the output, and loses it about one time in
    # three even straight against the API server, without Corral; kubectl exec without a TTY is
    # tested in test_kubectl_through_corral. Only the shell evaluating $((40+2)) prints the 42;
    # the terminal's echo of the typed line does not.
    browser.find_element(By.CSS_SELECTOR, "#shell-options button[type=submit]").click()
    terminal_input = browser.find_element(By.CSS_SELECTOR, "#terminal textarea")
    terminal_input.send_keys("echo from-the-$((40+2))-browser\n")  # typed while connecting: kept, sent on open
    WebDriverWait(browser, 20).until(lambda d: "from-the-42-browser" in d.find_element(By.ID, "terminal").text)
    assert browser.find_element(By.ID, "shell-status").text == "connected"
    terminal_input.send_keys("exit\n")
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "shell-status").text == "closed")
    assert not csp_violations(browser), "shell page"

    browser.get(f"{live_server_url}/pods/{pod.pk}/yaml/")
    WebDriverWait(browser, 20).until(lambda d: "kind: Pod" in d.find_element(By.ID, "yaml-text").get_attribute("value"))
    text = browser.find_element(By.ID, "yaml-text").get_attribute("value").replace("tier: web", "tier: edited")
    browser.execute_script("document.getElementById('yaml-text').value = arguments[0];", text)
    browser.find_element(By.ID, "yaml-apply").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "yaml-status").text in ("applied",) or "refused" in d.find_element(By.ID, "yaml-status").text)
    assert browser.find_element(By.ID, "yaml-status").text == "applied"
    assert kubectl("get", "pod", "shell", "-o", "jsonpath={.metadata.labels.tier}") == "edited"
    assert not csp_violations(browser), "yaml page"
