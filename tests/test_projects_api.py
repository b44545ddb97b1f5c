"""Projects through the API without a cluster: the pool check, namespace create and move,
members, deletion, default projects, the Kubernetes identity in /me, and that members see only
their projects' inventory."""

import pytest
from django.contrib.auth.models import Group

from clusters.models import ClusterEvent, Namespace, Pod, Workload
from portal.models import AuditEvent
from projects import desired, identity
from projects.defaults import create_default_projects
from projects.models import Project, ProjectMembership
from tests.conftest import make_user

POOL = {"limits.cpu": "4", "limits.memory": "4Gi", "pods": "20"}
SHARE = {"limits.cpu": "1", "limits.memory": "1Gi", "pods": "5"}


@pytest.fixture
def pooled(world):
    world.project.resource_quota = POOL
    world.project.namespace_default_quota = SHARE
    world.project.save()
    return world.project


def create_ns(client, project, name, **extra):
    return client.post(f"/api/v1/projects/{project.pk}/namespaces/", {"name": name, **extra}, format="json")


def test_namespaces_fill_the_pool_and_the_next_one_is_refused_saying_what_is_left(world, pooled):
    owner = world.client(world.owner)
    for i in range(2):  # web-prod (existing) + 2 = 3 shares of 1 cpu
        assert create_ns(owner, pooled, f"team-{i}").status_code == 201
    response = create_ns(owner, pooled, "big", resource_quota={"limits.cpu": "2", "limits.memory": "1Gi", "pods": "1"})
    assert response.status_code == 400
    message = response.json()["resource_quota"][0]
    assert "limits.cpu: asks 2 but only 1 is left (pool 4, 3 allocated to other namespaces)" in message
    assert not Namespace.objects.filter(name="big").exists()
    created = Namespace.objects.get(name="team-0")
    assert created.uid == "" and created.project == pooled and created.cluster == world.cluster
    assert AuditEvent.objects.filter(object_type="clusters.namespace", object_id=str(created.pk), action="create").exists()


def test_pool_without_default_refuses_a_namespace_without_its_own_quota(world):
    project = Project.objects.create(cluster=world.cluster, name="strict", resource_quota={"pods": "10"})
    owner = world.client(world.owner)
    response = create_ns(owner, project, "no-share")
    assert response.status_code == 400 and "namespace_default_quota" in response.json()["resource_quota"][0]
    response = create_ns(owner, project, "partial", resource_quota={"services": "2"})
    assert response.status_code == 400 and "must set pods" in response.json()["resource_quota"][0]
    assert create_ns(owner, project, "ok", resource_quota={"pods": "10"}).status_code == 201


def test_shrinking_the_pool_below_what_is_allocated_is_refused(world, pooled):
    owner = world.client(world.owner)
    create_ns(owner, pooled, "second")
    response = owner.patch(f"/api/v1/projects/{pooled.pk}/", {"resource_quota": {**POOL, "limits.cpu": "1500m"}}, format="json")
    assert response.status_code == 400
    assert "limits.cpu: 2 is allocated to its namespaces, more than 1500m" in response.json()["resource_quota"][0]
    response = owner.patch(f"/api/v1/projects/{pooled.pk}/", {"namespace_default_quota": {"pods": "1"}}, format="json")
    assert response.status_code == 400 and "must also set" in response.json()["namespace_default_quota"][0]
    pooled.refresh_from_db()
    assert pooled.resource_quota == POOL


@pytest.mark.parametrize("body, field", [
    ({"name": "Not_A_Name"}, "name"),
    ({"name": "x" * 64}, "name"),
    ({"name": "ok", "resource_quota": {"pods": "lots"}}, "resource_quota"),
    ({"name": "ok", "resource_quota": {"gpus": "1"}}, "resource_quota"),
    ({"name": "ok", "extra": 1}, "extra"),
    ({"name": "web-prod"}, "name"),  # exists already
])
def test_bad_namespace_input_is_a_400_naming_the_field(world, body, field):
    response = create_ns(world.client(world.owner), world.project, **body)
    assert response.status_code == 400 and field in response.json(), response.content


def test_container_default_requests_may_not_exceed_limits(world):
    response = world.client(world.owner).patch(
        f"/api/v1/projects/{world.project.pk}/", {"container_default_limits": {"limits.cpu": "100m", "requests.cpu": "1"}}, format="json"
    )
    assert response.status_code == 400 and "container_default_limits" in response.json()


def test_moving_a_namespace_checks_permissions_and_the_pool(world, pooled):
    loose = Namespace.objects.create(cluster=world.cluster, uid="ns-loose", name="loose")
    owner, member = world.client(world.owner), world.client(world.member)
    # A project member may not move namespaces (project owners and cluster owners may).
    assert member.patch(f"/api/v1/namespaces/{world.namespace.pk}/", {"project": None}, format="json").status_code == 403
    # The other tenant's project is "not found" to this owner.
    response = owner.patch(f"/api/v1/namespaces/{loose.pk}/", {"project": world.other_project.pk}, format="json")
    assert response.status_code == 400 and "project" in response.json()
    response = owner.patch(f"/api/v1/namespaces/{loose.pk}/", {"project": pooled.pk}, format="json")
    assert response.status_code == 200 and response.json()["project"] == pooled.pk
    response = owner.patch(f"/api/v1/namespaces/{loose.pk}/", {"resource_quota": {**SHARE, "limits.cpu": "3500m"}}, format="json")
    assert response.status_code == 400 and "only 3 is left" in response.json()["resource_quota"][0]
    assert owner.patch(f"/api/v1/namespaces/{loose.pk}/", {"resource_quota": {**SHARE, "limits.cpu": "2500m"}}, format="json").status_code == 200
    assert owner.patch(f"/api/v1/namespaces/{loose.pk}/", {}, format="json").status_code == 400
    assert owner.patch(f"/api/v1/namespaces/{loose.pk}/", {"name": "x"}, format="json").status_code == 400
    assert world.client(world.stranger).patch(f"/api/v1/namespaces/{loose.pk}/", {"project": None}, format="json").status_code == 404
    response = owner.patch(f"/api/v1/namespaces/{loose.pk}/", {"project": None}, format="json")
    assert response.status_code == 200 and response.json()["project"] is None
    assert AuditEvent.objects.filter(object_type="clusters.namespace", object_id=str(loose.pk), action="update").count() == 3


def test_members_endpoint_adds_users_and_groups_and_names_unknown_ones(world, group):
    owner = world.client(world.owner)
    url = f"/api/v1/projects/{world.project.pk}/members/"
    make_user("newcomer")
    assert owner.post(url, {"user": "newcomer", "role": "project-owner"}, format="json").status_code == 201
    assert owner.post(url, {"group": group.name, "role": "read-only"}, format="json").status_code == 201
    assert "user" in owner.post(url, {"user": "ghost", "role": "read-only"}, format="json").json()
    assert "group" in owner.post(url, {"group": "ghosts", "role": "read-only"}, format="json").json()
    assert "role" in owner.post(url, {"user": "owner", "role": "god"}, format="json").json()
    assert "project" in owner.post(url, {"user": "owner", "role": "read-only", "project": 1}, format="json").json()
    assert world.client(world.member).post(url, {"user": "owner", "role": "read-only"}, format="json").status_code == 403
    assert world.client(world.stranger).post(url, {"user": "owner", "role": "read-only"}, format="json").status_code == 404
    roles = {(m["user"], m["group"], m["role"]) for m in world.client(world.viewer).get(url).json()}
    assert ("newcomer", None, "project-owner") in roles and (None, group.name, "read-only") in roles


def test_deleting_a_project_keeps_its_namespaces_unless_asked(world, django_capture_on_commit_callbacks, monkeypatch):
    asked = []
    # Operations are queued with apply_async (portal.operations.start); no cluster answers here.
    monkeypatch.setattr("projects.tasks.delete_project.apply_async",
                        lambda args, **options: asked.append((args[1], args[2])))
    monkeypatch.setattr("projects.tasks.reconcile_cluster.delay", lambda cluster_id: None)  # no cluster here
    owner = world.client(world.owner)
    keep = Project.objects.create(cluster=world.cluster, name="keep")
    Namespace.objects.create(cluster=world.cluster, uid="k1", name="kept", project=keep)
    with django_capture_on_commit_callbacks(execute=True):
        assert owner.delete(f"/api/v1/projects/{keep.pk}/").status_code == 204
    assert Namespace.objects.get(name="kept").project is None and asked == []
    gone = Project.objects.create(cluster=world.cluster, name="gone")
    Namespace.objects.create(cluster=world.cluster, uid="g1", name="goner", project=gone)
    assert owner.delete(f"/api/v1/projects/{gone.pk}/?delete_namespaces=maybe").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.delete(f"/api/v1/projects/{gone.pk}/?delete_namespaces=true")
    # An operation deletes them in the cluster, then the rows (tests/test_api_fuzz_findings.py).
    assert response.status_code == 202 and response.json()["kind"] == "delete-project"
    assert asked == [(gone.pk, ["goner"])]


def test_import_creates_system_and_default_projects_and_protects_them(world):
    Namespace.objects.create(cluster=world.cluster, uid="ks", name="kube-system")
    system, default = create_default_projects(world.cluster)
    assert system.is_system and set(system.namespaces.values_list("name", flat=True)) == {"kube-system", "kube-public", "kube-node-lease"}
    assert list(default.namespaces.values_list("name", flat=True)) == ["default"]
    assert Namespace.objects.get(name="kube-system").uid == "ks"
    assert Namespace.objects.get(cluster=world.cluster, name="kube-public").uid == ""  # made by the sync, or the reconciler
    owner = world.client(world.owner)
    assert owner.delete(f"/api/v1/projects/{system.pk}/").status_code == 400
    assert owner.delete(f"/api/v1/projects/{default.pk}/?delete_namespaces=true").status_code == 400
    assert create_default_projects(world.cluster) == (system, default)  # idempotent


def test_me_shows_the_kubernetes_identity(world, group, settings):
    world.member.groups.add(group)
    me = world.client(world.member).get("/api/v1/me/").json()
    assert me["kubernetes_user"] == "corral:user:member" and me["kubernetes_groups"] == ["corral:group:platform-team"]
    settings.KUBE_IDENTITY_PREFIX = "oidc:"
    assert identity.kubernetes_user(world.member) == "oidc:user:member"


def test_one_rolebinding_per_namespace_and_role_listing_its_subjects(world, group):
    for i in range(5):
        ProjectMembership.objects.create(project=world.project, user=make_user(f"dev-{i}"), role="project-member")
    ProjectMembership.objects.create(project=world.project, group=group, role="project-member")
    Namespace.objects.create(cluster=world.cluster, uid="ns2", name="web-stage", project=world.project)
    want = desired.desired_state(world.cluster)
    bindings = {k: v for k, v in want.namespaced.items() if k[0] == "rolebindings"}
    assert sorted(bindings) == [("rolebindings", ns, f"corral-{role}") for ns in ("web-prod", "web-stage") for role in ("project-member", "read-only")]
    subjects = bindings[("rolebindings", "web-prod", "corral-project-member")][1]["subjects"]
    assert len(subjects) == 7 and {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "corral:group:platform-team"} in subjects
    assert bindings[("rolebindings", "web-prod", "corral-project-member")][1]["roleRef"]["name"] == "edit"


def test_changes_ask_for_a_reconcile_after_commit(world, django_capture_on_commit_callbacks, monkeypatch):
    from django.core.cache import cache

    queued = []
    monkeypatch.setattr("projects.tasks.reconcile_cluster.delay", queued.append)
    cache.delete(f"projects:reconcile-queued:{world.cluster.pk}")
    with django_capture_on_commit_callbacks(execute=True):
        response = world.client(world.owner).post(f"/api/v1/projects/{world.project.pk}/members/", {"user": "owner", "role": "read-only"}, format="json")
    assert response.status_code == 201 and queued == [world.cluster.pk]
    world.project.refresh_from_db()
    assert world.project.sync_state == "reconciling"
    cache.delete(f"projects:reconcile-queued:{world.cluster.pk}")


def test_members_see_only_their_projects_inventory(world):
    loose = Namespace.objects.create(cluster=world.cluster, uid="ns-x", name="unassigned")
    other = Project.objects.create(cluster=world.cluster, name="other-team")
    theirs = Namespace.objects.create(cluster=world.cluster, uid="ns-y", name="their-ns", project=other)
    for ns in (world.namespace, loose, theirs):
        w = Workload.objects.create(cluster=world.cluster, namespace=ns, uid=f"w-{ns.name}", name=f"app-{ns.name}", kind="deployment")
        Pod.objects.create(cluster=world.cluster, namespace=ns, uid=f"p-{ns.name}", name=f"pod-{ns.name}", workload=w)
        ClusterEvent.objects.create(cluster=world.cluster, namespace=ns, uid=f"e-{ns.name}", name=f"ev-{ns.name}", type="Warning")
    client = world.client(world.member)
    for kind in ("namespaces", "workloads", "pods", "events"):
        rows = client.get(f"/api/v1/{kind}/").json()["results"]
        assert {row["name" if kind == "namespaces" else "namespace"] for row in rows} == {"web-prod"}, (kind, rows)
    owner_names = {row["name"] for row in world.client(world.owner).get("/api/v1/namespaces/").json()["results"]}
    assert {"web-prod", "unassigned", "their-ns"} <= owner_names


def test_group_rename_asks_for_a_reconcile(world, group, django_capture_on_commit_callbacks, monkeypatch):
    from django.core.cache import cache

    queued = []
    monkeypatch.setattr("projects.tasks.reconcile_cluster.delay", queued.append)
    ProjectMembership.objects.create(project=world.project, group=group, role="read-only")
    cache.delete(f"projects:reconcile-queued:{world.cluster.pk}")
    with django_capture_on_commit_callbacks(execute=True):
        Group.objects.filter(pk=group.pk).first().save()
    assert queued == [world.cluster.pk]
    cache.delete(f"projects:reconcile-queued:{world.cluster.pk}")


def test_project_pages_show_pool_allocation_and_only_visible_projects(world, pooled, client):
    client.force_login(world.member)
    page = client.get("/projects/").content.decode()
    assert "web" in page and "batch" not in page
    detail = client.get(f"/projects/{pooled.pk}/").content.decode()
    assert "limits.cpu" in detail and "web-prod" in detail
    assert client.get(f"/projects/{world.other_project.pk}/").status_code == 404
    client.force_login(world.admin)
    admin_page = client.get(f"/admin/projects/project/{pooled.pk}/change/").content.decode()
    assert "limits.cpu: 4 / 1 / 3 / –" in admin_page
