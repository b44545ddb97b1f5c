"""Kubernetes events followed live: the watcher follows Warning and Normal events from a real
sandbox, keeps one row per event with its count, and a deployment held below its desired replicas
by a quota says so in plain words, on the API, in the page, and live in a real browser."""

import json
import time

import pytest

from clusters.explain import plain_words
from clusters.models import ClusterEvent, ClusterMembership, Namespace, Workload
from clusters.watcher import ClusterWatch
from tests.kube_fixtures import imported_cluster
from tests.test_browser import browser, csp_violations, live_server_url, log_in, person  # noqa: F401 - fixtures
from tests.waiting import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]


def test_quota_failures_and_normal_events_reach_the_api_within_seconds_one_row_per_event(sandbox, kubectl):
    from rest_framework.test import APIClient

    owner = person("events-owner")
    cluster = imported_cluster(sandbox, "events-live")
    ClusterMembership.objects.create(cluster=cluster, user=owner, role="cluster-owner")
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    try:
        ns = kubectl.namespace
        wait_for(lambda: Namespace.objects.filter(cluster=cluster, name=ns).exists(), 60, "the namespace in the inventory")
        kubectl("create", "quota", "two-pods", "--hard=pods=2")
        started = time.monotonic()
        kubectl("create", "deployment", "crowd", "--image=nginx:1.27", "--replicas=5")
        client = APIClient()
        client.force_authenticate(owner)

        def failed_create():
            answer = client.get(f"/api/v1/events/?cluster={cluster.pk}&namespace={ns}&reason=FailedCreate")
            assert answer.status_code == 200, answer.content
            return [e for e in answer.json()["results"] if "exceeded quota" in e["message"]]

        events = wait_for(failed_create, 10, "the ReplicaSet's FailedCreate event in the API")
        assert time.monotonic() - started < 10
        assert events[0]["type"] == "Warning" and events[0]["involved_kind"] == "ReplicaSet"
        # Normal events too (the Deployment scaling its ReplicaSet, pods scheduled).
        wait_for(lambda: ClusterEvent.objects.filter(cluster=cluster, namespace__name=ns, type="Normal", reason="ScalingReplicaSet").exists(),
              20, "a Normal event")

        # Deduplicated by count: one row per Kubernetes event, holding the count the cluster holds.
        def counts_match():
            listed = json.loads(kubectl("get", "events", "-o", "json"))["items"]
            theirs = {e["metadata"]["uid"]: e.get("count") or 1 for e in listed if e.get("reason") == "FailedCreate"}
            ours = dict(ClusterEvent.objects.filter(cluster=cluster, uid__in=theirs).values_list("uid", "count"))
            return theirs and ours == theirs and max(theirs.values()) > 1 and (theirs, ours)

        wait_for(counts_match, 60, "the FailedCreate event repeated, with the same count in Corral")
        rows = ClusterEvent.objects.filter(cluster=cluster, namespace__name=ns, reason="FailedCreate")
        assert rows.count() == len(set(rows.values_list("uid", flat=True)))

        # The workload's row in plain words, on the page the owner opens.
        workload = wait_for(lambda: Workload.objects.filter(cluster=cluster, namespace__name=ns, name="crowd").first(), 10, "the deployment")
        from django.test import Client

        browser_client = Client()
        browser_client.force_login(owner)
        page = browser_client.get(f"/clusters/{cluster.pk}/?namespace={ns}")
        assert "quota “two-pods” is used up" in page.content.decode()
        assert workload.desired_replicas == 5
    finally:
        watch.stop(wait=10)


def test_plain_words_name_the_quota_and_what_is_used():
    event = ClusterEvent(type="Warning", reason="FailedCreate",
                         message='pods "web-5d9c-x" is forbidden: exceeded quota: corral-web, requested: pods=1, used: pods=2, limited: pods=2')
    assert plain_words(event) == ("Kubernetes may not create more pods: the namespace's quota “corral-web” is used up "
                                  "(a pod asks for pods=1; used pods=2 of pods=2). Raise the project's quota or scale down.")
    event.message = 'pods "web-5d9c-x" is forbidden: failed quota: corral-web: must specify limits.cpu for: nginx'
    assert "requires every container to state limits.cpu for: nginx" in plain_words(event)
    event.type = "Normal"
    assert plain_words(event) == ""


@pytest.mark.browser
def test_a_deployment_over_its_quota_shows_the_reason_live_within_5_seconds(sandbox, kubectl, browser, live_server_url):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    user = person("quota-watcher")
    cluster = imported_cluster(sandbox, "quota-live")
    ClusterMembership.objects.create(cluster=cluster, user=user, role="cluster-owner")
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    try:
        ns = kubectl.namespace
        wait_for(lambda: Namespace.objects.filter(cluster=cluster, name=ns).exists(), 60, "the namespace in the inventory")
        kubectl("create", "quota", "two-pods", "--hard=pods=2")
        kubectl("create", "deployment", "web", "--image=nginx:1.27", "--replicas=2")
        workload = wait_for(lambda: Workload.objects.filter(cluster=cluster, namespace__name=ns, name="web", ready_replicas=2).first(),
                         60, "the deployment at 2 of 2")

        log_in(browser, live_server_url, user)
        browser.get(f"{live_server_url}/clusters/{cluster.pk}/?namespace={ns}")
        WebDriverWait(browser, 10).until(lambda d: "Live updates on" in d.find_element(By.ID, "live-status").text)
        row = f"workload-{workload.uid}"
        assert browser.find_element(By.CSS_SELECTOR, f"#{row} [data-field=why]").text == ""
        browser.execute_script("window.__notReloaded = true;")

        started = time.monotonic()
        kubectl("scale", "deployment", "web", "--replicas=5")
        WebDriverWait(browser, 5, poll_frequency=0.05).until(
            lambda d: "quota" in d.find_element(By.CSS_SELECTOR, f"#{row} [data-field=why]").text)
        assert time.monotonic() - started < 5
        assert browser.execute_script("return window.__notReloaded === true;")
        why = browser.find_element(By.CSS_SELECTOR, f"#{row} [data-field=why]").text
        assert "two-pods" in why and "used up" in why
        assert "FailedCreate" in browser.find_element(By.ID, "events").text
        # The same reason after a reload, from the server.
        browser.get(f"{live_server_url}/clusters/{cluster.pk}/?namespace={ns}")
        assert "two-pods" in browser.find_element(By.CSS_SELECTOR, f"#{row} [data-field=why]").text
        assert not csp_violations(browser)
    finally:
        watch.stop(wait=10)
