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


def test_yaml_of_any_object_with_edit_and_apply_under_the_clusters_rbac(sandbox, kubectl, browser, live_server_url):  # noqa: F811
    """The generic YAML view (portal-object-yaml): a member edits a Deployment in their namespace;
    bad YAML and a stale version are refused clearly and change nothing; a Secret's values are
    masked until asked for and kept when a masked text is applied; a read-only member may see the
    Deployment but the cluster refuses them the Secret; another project's member gets the
    cluster's refusal, someone who may not see the cluster Corral's 404, bad coordinates a 400."""
    import base64
    import json

    from django.urls import reverse
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cluster = Cluster.objects.create(
        name=f"yaml-{uuid.uuid4().hex[:4]}", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    kubectl("create", "deployment", "shop", "--image=nginx")
    kubectl("create", "secret", "generic", "shop-key", "--from-literal=password=s3cret-value")
    sync.sync(cluster.pk)
    web, other = Project.objects.create(cluster=cluster, name="web"), Project.objects.create(cluster=cluster, name="other")
    Namespace.objects.filter(cluster=cluster, name=kubectl.namespace).update(project=web)
    member, reader, outsider = (person(f"{who}-{uuid.uuid4().hex[:4]}") for who in ("dev", "ro", "out"))
    ProjectMembership.objects.create(project=web, user=member, role="project-member")
    ProjectMembership.objects.create(project=web, user=reader, role="read-only")
    ProjectMembership.objects.create(project=other, user=outsider, role="project-member")
    reconciler.reconcile(cluster.pk)
    page = f"{live_server_url}{reverse('portal-object-yaml', args=[cluster.pk])}"
    deployment = f"{page}?apiVersion=apps/v1&kind=Deployment&namespace={kubectl.namespace}&name=shop"
    secret = f"{page}?apiVersion=v1&kind=Secret&namespace={kubectl.namespace}&name=shop-key"

    def text():
        return browser.find_element(By.ID, "yaml-text").get_attribute("value")

    def status():
        return browser.find_element(By.ID, "yaml-status").text

    def apply(new_text):
        browser.execute_script("document.getElementById('yaml-text').value = arguments[0];", new_text)
        browser.find_element(By.ID, "yaml-apply").click()
        WebDriverWait(browser, 20).until(lambda d: status() not in ("", "applying…"))
        return status()

    def version():
        return json.loads(kubectl("get", "deployment", "shop", "-o", "json"))["metadata"]["resourceVersion"]

    log_in(browser, live_server_url, member)
    browser.get(deployment)
    WebDriverWait(browser, 20).until(lambda d: "kind: Deployment" in text())
    assert apply(text().replace("replicas: 1", "replicas: 2", 1)) == "applied"
    assert kubectl("get", "deployment", "shop", "-o", "jsonpath={.spec.replicas}") == "2"

    before = version()
    outcome = apply(text() + "\n  - [unclosed: {")
    assert outcome.startswith("refused: ") and "yaml" in outcome.lower(), outcome
    assert version() == before
    browser.find_element(By.ID, "yaml-reload").click()
    WebDriverWait(browser, 20).until(lambda d: "kind: Deployment" in text() and status() == "")
    kubectl("label", "deployment", "shop", "changed=elsewhere")  # someone else writes meanwhile
    outcome = apply(text().replace("replicas: 2", "replicas: 3", 1))
    assert outcome.startswith("conflict: ") and "has been modified" in outcome, outcome
    assert kubectl("get", "deployment", "shop", "-o", "jsonpath={.spec.replicas}") == "2"

    encoded = base64.b64encode(b"s3cret-value").decode()
    browser.get(secret)
    WebDriverWait(browser, 20).until(lambda d: "kind: Secret" in text())
    assert "password: (hidden)" in text() and encoded not in text()
    assert apply(text().replace("metadata:\n", "metadata:\n  labels:\n    tier: edited\n", 1)) == "applied"
    stored = json.loads(kubectl("get", "secret", "shop-key", "-o", "json"))
    assert stored["data"]["password"] == encoded and stored["metadata"]["labels"] == {"tier": "edited"}
    assert encoded not in text()  # masked again after applying
    browser.find_element(By.ID, "yaml-reveal").click()
    assert f"password: {encoded}" in text()
    assert not csp_violations(browser), "yaml page"

    browser.get(f"{page}?apiVersion=apps/v1&kind=Deployment&namespace={kubectl.namespace}")
    assert "name is required" in browser.find_element(By.ID, "yaml-problems").text
    browser.get(f"{page}?apiVersion=apps/v1&kind=Deployment&namespace=Bad_NS&name=shop")
    assert "not a valid Kubernetes namespace" in browser.find_element(By.ID, "yaml-problems").text
    browser.get(f"{page}?apiVersion=apps/v1&kind=Nonesuch&namespace={kubectl.namespace}&name=shop")
    WebDriverWait(browser, 20).until(lambda d: "serves no kind Nonesuch" in status())

    browser.delete_all_cookies()
    log_in(browser, live_server_url, reader)
    browser.get(deployment)
    WebDriverWait(browser, 20).until(lambda d: "kind: Deployment" in text())
    browser.get(secret)
    WebDriverWait(browser, 20).until(lambda d: "forbidden" in status())
    assert text() == ""

    browser.delete_all_cookies()
    log_in(browser, live_server_url, outsider)
    browser.get(deployment)
    WebDriverWait(browser, 20).until(lambda d: "forbidden" in status())
    assert text() == ""
    assert apply("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\n").startswith("refused: ")

    browser.delete_all_cookies()
    log_in(browser, live_server_url, person(f"none-{uuid.uuid4().hex[:4]}"))
    browser.get(deployment)
    assert "yaml-text" not in browser.page_source and "shop" not in browser.find_element(By.TAG_NAME, "h1").text
