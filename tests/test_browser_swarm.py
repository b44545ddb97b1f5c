"""The Swarm walk-through in a real browser, on the real ASGI server, with the Swarm watcher
following the engine's events: deploy a service from the cluster page into the project's stack,
scale it to 3 there, kill one task's container and watch Swarm's replacement appear live."""

import uuid
from contextlib import closing

import pytest

from clusters.models import Cluster, Namespace, Workload
from clusters.swarm.watcher import SwarmWatch
from projects.models import Project, ProjectMembership
from tests.test_browser import browser, csp_violations, live_server_url, log_in, person  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_swarm_walkthrough_in_the_browser(swarm, browser, live_server_url):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    swarm.remove_all_services()
    user = person(f"sw-{uuid.uuid4().hex[:4]}")
    cluster = Cluster.objects.create(name=f"swarm-{uuid.uuid4().hex[:4]}", kind="swarm", driver="imported", state="active",
                                     api_endpoint=swarm.host, credentials=swarm.credentials)
    project = Project.objects.create(cluster=cluster, name="shop")
    ProjectMembership.objects.create(project=project, user=user, role="project-member")
    Namespace.objects.create(cluster=cluster, name="walk", uid="", project=project)  # the project's stack
    watch = SwarmWatch(cluster.pk, None)
    watch.start()
    page = f"{live_server_url}/clusters/{cluster.pk}/?namespace=walk"

    def task_rows(d, state=""):
        return d.execute_script("return Array.from(document.querySelectorAll('#pods tr[id^=pod-]'), r => r.id)"
                                ".filter(id => document.getElementById(id).textContent.includes(arguments[0]));", state)

    try:
        assert watch.following.wait(30), "the Swarm watcher did not start following"
        log_in(browser, live_server_url, user)
        browser.get(page)
        browser.find_element(By.ID, "d-name").send_keys("web")
        browser.find_element(By.ID, "d-image").send_keys(swarm.image)
        browser.find_element(By.ID, "d-name").submit()
        WebDriverWait(browser, 15).until(lambda d: "walk_web" in d.find_element(By.ID, "workloads").text)
        workload = Workload.objects.get(cluster=cluster, name="walk_web")
        WebDriverWait(browser, 30).until(lambda d: len(task_rows(d, "Running")) == 1)

        field = browser.find_element(By.ID, f"scale-{workload.pk}")
        field.clear()
        field.send_keys("3")
        field.submit()
        WebDriverWait(browser, 60).until(lambda d: len(task_rows(d, "Running")) == 3)
        before = set(task_rows(browser, "Running"))

        with closing(swarm.client()) as client:
            victim = next(c for c in client.containers.list(filters={"label": f"com.docker.swarm.service.id={workload.uid}"}))
            victim.kill()
        # Swarm starts a new task; the page shows it running, live, without a reload.
        WebDriverWait(browser, 60).until(lambda d: len(task_rows(d, "Running")) == 3 and set(task_rows(d, "Running")) - before)
        assert not csp_violations(browser)
    finally:
        watch.stop(wait=10)
        swarm.remove_all_services()
