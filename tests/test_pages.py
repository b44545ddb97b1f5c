"""The portal pages and the admin, as a signed-in person sees them."""

import pytest
from django.test import Client

from clusters.models import Node
from portal.models import Operation


@pytest.fixture
def browser(world):
    def login(user):
        client = Client()
        client.force_login(user)
        return client

    return login


def test_login_page_and_redirect(world):
    client = Client()
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    page = client.get("/login/")
    assert page.status_code == 200 and b"Log in to Corral" in page.content
    response = client.post("/login/", {"username": "owner", "password": "wrong"})
    assert b"Invalid credentials" in response.content
    response = client.post("/login/", {"username": "owner", "password": "owner-password-1"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_dashboard_lists_only_visible_clusters_with_figures(world, browser):
    Node.objects.create(cluster=world.cluster, uid="n1", name="worker-1", ready=True, cpu_allocatable_m=4000, memory_allocatable_bytes=16 * 2**30)
    Node.objects.create(cluster=world.cluster, uid="n2", name="worker-2", ready=False, cpu_allocatable_m=4000)
    page = browser(world.viewer).get("/").content.decode()
    assert "alpha" in page and "bravo" not in page
    assert "1 / 2" in page  # nodes ready / total
    assert "16.0 GiB" in page
    assert "live.js" in page and f"[{world.cluster.pk}]" in page


def test_cluster_page_is_404_for_strangers(world, browser):
    assert browser(world.stranger).get(f"/clusters/{world.cluster.pk}/").status_code == 404
    page = browser(world.owner).get(f"/clusters/{world.cluster.pk}/")
    assert page.status_code == 200 and b"alpha" in page.content


def test_operation_page_shows_progress_and_log(world, browser):
    op = Operation.objects.create(kind="provision", cluster=world.cluster, created_by=world.owner, progress=40,
                                  status="running", log=[{"time": "t", "message": "starting etcd"}])
    page = browser(world.owner).get(f"/operations/{op.pk}/").content.decode()
    assert "starting etcd" in page and 'value="40"' in page
    assert browser(world.stranger).get(f"/operations/{op.pk}/").status_code == 404


def test_logout_needs_post(world, browser):
    client = browser(world.owner)
    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_healthz(db):
    assert Client().get("/healthz").json() == {"status": "ok"}


ADMIN_PAGES = [
    "clusters/cluster", "clusters/node", "clusters/namespace", "clusters/workload", "clusters/pod", "clusters/service",
    "clusters/clusterevent", "clusters/clustermembership", "projects/project", "projects/projectmembership",
    "monitoring/alertrule", "monitoring/alert", "monitoring/notifier", "portal/auditevent", "portal/operation",
    "portal/apitoken", "portal/globalrolebinding", "django_celery_beat/periodictask",
]


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_admin_changelists_render(world, browser, page):
    client = browser(world.admin)
    assert client.get(f"/admin/{page}/").status_code == 200
    assert client.get(f"/admin/{page}/?q=x").status_code == 200


def test_admin_inventory_is_read_only(world, browser):
    node = Node.objects.create(cluster=world.cluster, uid="n1", name="worker-1")
    client = browser(world.admin)
    assert client.get("/admin/clusters/node/add/").status_code == 403
    page = client.get(f"/admin/clusters/node/{node.pk}/change/").content.decode()
    assert 'name="name"' not in page  # shown, not editable


def test_admin_changelist_is_restricted_for_staff(world, browser):
    page = browser(world.stranger).get("/admin/clusters/cluster/").content.decode()
    assert "bravo" in page and "alpha" not in page
    assert browser(world.stranger).get(f"/admin/clusters/cluster/{world.cluster.pk}/change/").status_code in (302, 403, 404)


def test_admin_never_shows_credentials(world, browser):
    world.cluster.credentials = {"token": "s3cr3t-token"}
    world.cluster.save()
    page = browser(world.admin).get(f"/admin/clusters/cluster/{world.cluster.pk}/change/").content.decode()
    assert "s3cr3t" not in page and "stored (encrypted)" in page


def test_admin_change_is_audited(world, browser):
    from portal.models import AuditEvent

    client = browser(world.admin)
    response = client.post(f"/admin/projects/project/{world.project.pk}/change/", {
        "cluster": world.cluster.pk, "name": "web", "description": "via admin", "resource_quota": "{}",
        "namespace_default_quota": "{}", "container_default_limits": "{}",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content[:2000]
    event = AuditEvent.objects.get(object_type="projects.project", action="update")
    assert event.source == "admin" and event.username == "root" and event.after == {"description": "via admin"}


def test_admin_creating_a_sandbox_cluster_starts_provisioning(world, browser):
    client = browser(world.admin)
    response = client.post("/admin/clusters/cluster/add/", {
        "name": "try-it", "slug": "", "description": "", "labels": "{}", "driver": "sandbox", "provider": "kwok",
        "driver_config": '{"nodes": 2}', "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content[:3000]
    op = Operation.objects.get(kind="provision", cluster__name="try-it")
    assert op.status == "pending"


def test_cluster_page_filters_and_search_respect_permissions(world, browser):
    from clusters.models import Pod, Workload

    w = Workload.objects.create(cluster=world.cluster, namespace=world.namespace, uid="w1", name="frontend", kind="deployment", images=["nginx:1.27"])
    Pod.objects.create(cluster=world.cluster, namespace=world.namespace, uid="p1", name="frontend-abc", workload=w, images=["nginx:1.27"], phase="Running")
    Pod.objects.create(cluster=world.other_cluster, namespace=world.other_namespace, uid="p2", name="nginx-secret", images=["nginx:1.27"])
    page = browser(world.member).get(f"/clusters/{world.cluster.pk}/", {"q": "nginx"}).content.decode()
    assert "frontend-abc" in page and 'id="pod-p1"' in page
    page = browser(world.member).get(f"/clusters/{world.cluster.pk}/", {"namespace": "other"}).content.decode()
    assert "frontend-abc" not in page
    found = browser(world.member).get("/search/", {"q": "nginx"}).content.decode()
    assert "frontend-abc" in found and "nginx-secret" not in found
    assert "nginx-secret" in browser(world.admin).get("/search/", {"q": "nginx"}).content.decode()


def test_portal_links_lead_to_portal_pages_not_the_api(world, browser):
    page = browser(world.owner).get("/").content.decode()
    assert f'href="/clusters/{world.cluster.pk}/"' in page
    assert 'href="/api/v1/' not in page  # buttons post to the API (data-api); links lead to pages
