"""Global permissions as Rancher has them: creating clusters (import and provision) and using the
sandbox driver are off for standard users until granted to them or to one of their groups; a
setting caps sandbox size for everyone."""

import pytest

from clusters.models import Cluster
from portal.models import GlobalRoleBinding, Operation
from tests.conftest import make_user

CREATE = {"name": "new-one", "driver": "sandbox", "driver_config": {"nodes": 2}}


@pytest.fixture
def standard(db):
    return make_user("standard")


def test_a_standard_user_may_not_provision_or_import(world, standard):
    client = world.client(standard)
    before = (Cluster.objects.count(), Operation.objects.count())
    response = client.post("/api/v1/clusters/", CREATE, format="json")
    assert response.status_code == 403
    assert "Create clusters" in response.json()["detail"]
    response = client.post("/api/v1/clusters/import/", {"name": "x", "server": "https://10.0.0.1:6443", "token": "t"}, format="json")
    assert response.status_code == 403
    assert "Create clusters" in response.json()["detail"]
    assert (Cluster.objects.count(), Operation.objects.count()) == before


def test_the_portal_import_page_is_refused_without_the_permission(world, standard):
    from django.test import Client

    client = Client()
    client.force_login(standard)
    assert client.get("/clusters/import/").status_code == 403
    client.force_login(world.owner)
    assert client.get("/clusters/import/").status_code == 200


def test_creating_clusters_without_the_sandbox_permission_refuses_the_sandbox_driver(world, standard):
    GlobalRoleBinding.objects.create(user=standard, role="clusters-create")
    response = world.client(standard).post("/api/v1/clusters/", CREATE, format="json")
    assert response.status_code == 403
    assert "Use the sandbox driver" in response.json()["detail"]
    assert not Cluster.objects.filter(name="new-one").exists()


def test_permissions_granted_to_a_group_apply_to_its_members(world, standard, group):
    standard.groups.add(group)
    GlobalRoleBinding.objects.create(group=group, role="clusters-create")
    GlobalRoleBinding.objects.create(group=group, role="sandbox-use")
    response = world.client(standard).post("/api/v1/clusters/", CREATE, format="json")
    assert response.status_code == 201, response.content
    assert Cluster.objects.get(name="new-one").memberships.get(user=standard).role == "cluster-owner"


def test_sandbox_size_is_capped_by_the_setting_for_everyone(world, settings):
    settings.SANDBOX_MAX_NODES = 5
    for user in (world.owner, world.admin):
        response = world.client(user).post("/api/v1/clusters/", {**CREATE, "driver_config": {"nodes": 6}}, format="json")
        assert response.status_code == 400
        assert "from 1 to 5 (PORTAL_SANDBOX_MAX_NODES)" in response.json()["driver_config"][0]
    assert not Cluster.objects.filter(name="new-one").exists()
    assert world.client(world.owner).post("/api/v1/clusters/", {**CREATE, "driver_config": {"nodes": 5}}, format="json").status_code == 201


def test_me_lists_the_global_permissions(world):
    body = world.client(world.owner).get("/api/v1/me/").json()
    assert set(body["global_permissions"]) == {"clusters-create", "sandbox-use"}
    assert world.client(world.member).get("/api/v1/me/").json()["global_permissions"] == []
