"""A cluster's whole lifecycle without the admin: create from a form per driver, rename, replace
credentials, sync now, remove after a confirmation that names what happens; the admin's red Delete
is the same removal.  Each door goes through the permission engine and the API's code paths."""

import pytest
from django.test import Client

from clusters.models import Cluster, ClusterState, Node
from portal.models import GlobalRole, GlobalRoleBinding, Operation
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _page(user, url, method="get"):
    client = Client()
    client.force_login(user)
    return getattr(client, method)(url)


def test_the_create_page_offers_each_driver_the_user_may_use(world, settings):
    settings.SANDBOX_MAX_NODES = 7
    page = _page(world.owner, "/clusters/new/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="create-sandbox"' in html and 'max="7"' in html and "From 1 to 7" in html
    assert 'name="driver_config.nodes"' in html and "driver_config" not in html.replace('name="driver_config.nodes"', "")
    assert "/clusters/import/" in html

    # Create clusters without the sandbox driver: the sandbox form gives way to the reason.
    importer = make_user("importer")
    GlobalRoleBinding.objects.create(user=importer, role=GlobalRole.CREATE_CLUSTERS)
    html = _page(importer, "/clusters/new/").content.decode()
    assert 'id="create-sandbox"' not in html and "Use the sandbox driver" in html

    # Neither: refused, naming the permission; the dashboard offers no link.
    for user in (world.member, world.stranger):
        refused = _page(user, "/clusters/new/")
        assert refused.status_code == 403 and "Create clusters" in refused.content.decode()
        assert 'id="create-cluster"' not in _page(user, "/").content.decode()
    assert 'id="create-cluster"' in _page(world.owner, "/").content.decode()


def test_the_create_form_posts_what_the_api_takes_and_the_api_refuses_too_many_nodes(world, settings):
    """The form's fields are the API body (driver_config.nodes becomes {"driver_config": {"nodes": N}});
    the API answers a node count over the cap with a 400 naming it, and stores nothing."""
    settings.SANDBOX_MAX_NODES = 5
    client = world.client(world.owner)
    answer = client.post("/api/v1/clusters/", {"name": "big", "driver": "sandbox", "driver_config": {"nodes": 6}}, format="json")
    assert answer.status_code == 400 and "1 to 5" in str(answer.json())
    assert not Cluster.objects.filter(name="big").exists()
    answer = client.post("/api/v1/clusters/", {"name": "small", "driver": "sandbox", "driver_config": {"nodes": 2}}, format="json")
    assert answer.status_code == 201, answer.content
    cluster = Cluster.objects.get(pk=answer.json()["id"])
    assert cluster.memberships.get(user=world.owner).role == "cluster-owner"
    assert Operation.objects.filter(cluster=cluster, kind="provision").exists()


def test_the_cluster_page_offers_sync_rename_credentials_and_remove_to_owners_only(world):
    Cluster.objects.filter(pk=world.cluster.pk).update(driver="imported")  # credentials: imported clusters only
    html = _page(world.owner, f"/clusters/{world.cluster.pk}/").content.decode()
    for marker in ('id="sync-now"', 'id="rename"', 'id="credentials"', f'href="/clusters/{world.cluster.pk}/remove/"'):
        assert marker in html, marker
    for user in (world.viewer, world.member):  # a cluster member, a project member: they see the cluster, not the controls
        html = _page(user, f"/clusters/{world.cluster.pk}/").content.decode()
        assert 'id="cluster-actions"' not in html
    Cluster.objects.filter(pk=world.cluster.pk).update(driver="sandbox")  # Corral holds a sandbox's credentials
    html = _page(world.owner, f"/clusters/{world.cluster.pk}/").content.decode()
    assert 'id="rename"' in html and 'id="credentials"' not in html


def test_the_remove_page_names_what_happens(world):
    from clusters.models import Namespace

    Node.objects.create(cluster=world.cluster, uid="n1", name="node-1")
    Cluster.objects.filter(pk=world.cluster.pk).update(driver="imported")
    page = _page(world.owner, f"/clusters/{world.cluster.pk}/remove/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Corral forgets “alpha”. The cluster itself is not changed" in html
    namespaces = Namespace.objects.filter(cluster=world.cluster).count()
    assert f"1 nodes, {namespaces} namespaces" in html and "1 projects" in html
    assert f'data-api="/api/v1/clusters/{world.cluster.pk}/"' in html and 'data-method="DELETE"' in html
    # A cluster member sees the cluster but may not remove it; another tenant does not see it.
    assert _page(world.viewer, f"/clusters/{world.cluster.pk}/remove/").status_code == 403
    assert _page(world.stranger, f"/clusters/{world.cluster.pk}/remove/").status_code == 404
    world.cluster.refresh_from_db()
    assert world.cluster.state == ClusterState.ACTIVE  # a GET removes nothing

    sandbox = Cluster.objects.create(name="box", driver="sandbox", state="active", driver_config={"nodes": 3})
    html = _page(world.admin, f"/clusters/{sandbox.pk}/remove/").content.decode()
    assert "The sandbox “box” is torn down" in html


def test_sync_and_removal_refuse_what_the_state_does_not_allow(world):
    client = world.client(world.owner)
    Cluster.objects.filter(pk=world.cluster.pk).update(state=ClusterState.PROVISIONING)
    answer = client.post(f"/api/v1/clusters/{world.cluster.pk}/sync/")
    assert answer.status_code == 400 and answer.json()["state"] == "a provisioning cluster cannot be synced"
    Cluster.objects.filter(pk=world.cluster.pk).update(state=ClusterState.ACTIVE)
    first = client.delete(f"/api/v1/clusters/{world.cluster.pk}/")
    assert first.status_code == 202
    again = client.delete(f"/api/v1/clusters/{world.cluster.pk}/")
    assert again.status_code == 400 and "already being removed" in again.json()["state"]
    assert Operation.objects.filter(cluster=world.cluster, kind="remove").count() == 1


def test_the_admins_red_delete_is_the_removal_for_a_superuser(world):
    """The admin's Delete confirmation names what the removal does (not "no permission to delete:
    service, namespace, node"), and confirming starts the same removal operation as the API."""
    Node.objects.create(cluster=world.cluster, uid="n1", name="node-1")
    url = f"/admin/clusters/cluster/{world.cluster.pk}/delete/"
    page = _page(world.admin, url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "no permission to delete" not in html.lower() and "The sandbox “alpha” is torn down" in html
    assert "Remove the cluster “alpha”?" in html
    client = Client()
    client.force_login(world.admin)
    answer = client.post(url, {"post": "yes"})
    assert answer.status_code == 302
    world.cluster.refresh_from_db()
    assert world.cluster.state == ClusterState.REMOVING
    op = Operation.objects.get(cluster=world.cluster, kind="remove")
    assert op.created_by == world.admin
    # The bulk action's confirmation is the same.
    other = _page(world.admin, "/admin/clusters/cluster/", "get")
    assert other.status_code == 200
    asked = client.post("/admin/clusters/cluster/", {"action": "delete_selected", "_selected_action": [world.other_cluster.pk]})
    assert "Remove the selected clusters?" in asked.content.decode() and "The sandbox “bravo” is torn down" in asked.content.decode()
    confirm = client.post("/admin/clusters/cluster/", {"action": "delete_selected", "_selected_action": [world.other_cluster.pk], "post": "yes"})
    assert confirm.status_code == 302
    world.other_cluster.refresh_from_db()
    assert world.other_cluster.state == ClusterState.REMOVING


def test_the_admins_delete_stays_closed_to_whoever_may_not_remove_the_cluster(world):
    url = f"/admin/clusters/cluster/{world.cluster.pk}/delete/"
    # A cluster member (staff) sees the cluster but may not delete it; another tenant does not see it.
    assert _page(world.viewer, url).status_code == 403
    assert _page(world.stranger, url).status_code in (302, 404)
    assert _page(world.viewer, url, "post").status_code == 403
    world.cluster.refresh_from_db()
    assert world.cluster.state == ClusterState.ACTIVE
    assert not Operation.objects.filter(cluster=world.cluster, kind="remove").exists()


def test_the_admins_add_form_provisions_a_sandbox_by_node_count(world, settings):
    """The admin's add form defaults to the sandbox driver and takes a node count, not JSON."""
    settings.SANDBOX_MAX_NODES = 4
    client = Client()
    client.force_login(world.admin)
    form = client.get("/admin/clusters/cluster/add/").content.decode()
    assert 'name="nodes"' in form and '<option value="sandbox" selected>' in form
    base = {"name": "by-count", "description": "", "labels": "{}", "driver": "sandbox", "provider": "", "driver_config": "{}",
            "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}
    refused = client.post("/admin/clusters/cluster/add/", {**base, "nodes": "5"})
    assert refused.status_code == 200 and "1 to 4" in refused.content.decode()
    assert not Cluster.objects.filter(name="by-count").exists()
    assert client.post("/admin/clusters/cluster/add/", {**base, "nodes": "2"}).status_code == 302
    cluster = Cluster.objects.get(name="by-count")
    assert cluster.driver_config == {"nodes": 2}
    assert Operation.objects.filter(cluster=cluster, kind="provision").exists()
    change = client.get(f"/admin/clusters/cluster/{cluster.pk}/change/").content.decode()
    assert 'name="nodes"' not in change


def test_the_admins_sync_action_starts_the_same_sync_operation(world):
    client = Client()
    client.force_login(world.admin)
    Cluster.objects.filter(pk=world.other_cluster.pk).update(state=ClusterState.PROVISIONING)
    answer = client.post("/admin/clusters/cluster/", {"action": "sync_now", "_selected_action": [world.cluster.pk, world.other_cluster.pk]}, follow=True)
    assert "started a sync of 1 cluster(s)" in answer.content.decode().lower()
    op = Operation.objects.get(kind="sync")
    assert op.cluster_id == world.cluster.pk and op.created_by == world.admin
