"""Nobody grants a role they do not hold (Kubernetes RBAC's escalation rule), through the admin
and through the API: a staff user cannot bind themselves in a foreign cluster, move their own
membership to another cluster or project, or grant a role above their own; global roles are for
administrators.  A superuser can do all of it."""

import pytest
from django.contrib.auth.models import Group

from clusters.models import Cluster, ClusterMembership, ClusterState
from portal import permissions as p
from portal.models import GlobalRoleBinding
from projects.models import Project, ProjectMembership
from tests.admin_base import signed_in
from tests.conftest import make_user

CM_ADD = "/admin/clusters/clustermembership/add/"
PM_ADD = "/admin/projects/projectmembership/add/"


def cm_change(membership):
    return f"/admin/clusters/clustermembership/{membership.pk}/change/"


def pm_change(membership):
    return f"/admin/projects/projectmembership/{membership.pk}/change/"


def binding(scope_field, scope, user, role, group=None):
    return {scope_field: scope.pk, "role": role, "user": user.pk if user else "", "group": group.pk if group else ""}


@pytest.fixture
def reader_group(world):
    """The stranger sees cluster A and project P (member / read-only, through a group), owns
    none of them, and owns cluster B and project Q."""
    group = Group.objects.create(name="alpha-readers")
    world.stranger.groups.add(group)
    ClusterMembership.objects.create(cluster=world.cluster, group=group, role="cluster-member")
    ProjectMembership.objects.create(project=world.project, group=group, role="read-only")
    ProjectMembership.objects.create(project=world.other_project, user=world.stranger, role="project-owner")
    return group


@pytest.fixture
def member_may_invite(monkeypatch):
    """A looser rule set, as an operator might register one: cluster members and project members
    may add memberships (and change their project; deleting it stays the owners').  The escalation
    rule must still hold."""
    from clusters.models import ClusterMembership as CM
    from clusters.permissions import BASICS

    member_add = {**BASICS, p.ADD: frozenset({"cluster-owner", "cluster-member"})}
    monkeypatch.setitem(p._rules, CM, p.Rule((p.Grant("cluster", "cluster", member_add),)))
    writers = frozenset({"project-owner", "project-member"})
    loose = {
        p.VIEW: frozenset({"project-owner", "project-member", "read-only"}), p.ADD: writers, p.CHANGE: writers,
        p.DELETE: frozenset({"project-owner"}),
    }
    for model in (Project, ProjectMembership):
        rule = p._rules[model]
        grants = tuple(p.Grant(g.scope, g.lookup, loose) if g.scope == "project" else g for g in rule.grants)
        monkeypatch.setitem(p._rules, model, p.Rule(grants, rule.extra, rule.add_permission))


# --- the engine's rule ---------------------------------------------------------------------------


def test_may_grant_follows_what_the_granter_holds(world):
    assert p.may_grant(world.owner, "cluster-owner", "cluster", world.cluster)
    assert p.may_grant(world.owner, "project-owner", "project", world.project)  # a cluster owner runs its projects
    assert not p.may_grant(world.owner, "cluster-member", "cluster", world.other_cluster)
    assert not p.may_grant(world.owner, "project-owner", "project", world.other_project)
    assert p.may_grant(world.viewer, "cluster-member", "cluster", world.cluster)
    assert not p.may_grant(world.viewer, "cluster-owner", "cluster", world.cluster)
    assert p.may_grant(world.member, "project-member", "project", world.project)
    assert p.may_grant(world.member, "read-only", "project", world.project)
    assert not p.may_grant(world.member, "project-owner", "project", world.project)
    assert not p.may_grant(world.member, "cluster-member", "cluster", world.cluster)
    assert not p.may_grant(world.owner, "administrator")  # global roles: administrators only
    assert p.may_grant(world.admin, "administrator")
    assert p.may_grant(world.admin, "cluster-owner", "cluster", world.other_cluster)


def test_a_project_owner_grants_project_roles_but_no_cluster_role(world):
    ProjectMembership.objects.filter(user=world.member).update(role="project-owner")
    for role in ("project-owner", "project-member", "read-only"):
        assert p.may_grant(world.member, role, "project", world.project)
    assert not p.may_grant(world.member, "cluster-member", "cluster", world.cluster)


# --- through the admin ------------------------------------------------------------------------


def test_a_staff_user_cannot_make_themselves_owner_of_a_foreign_cluster(world):
    data = binding("cluster", world.cluster, world.stranger, "cluster-owner")
    response = signed_in(world.stranger).post(CM_ADD, data)
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not ClusterMembership.objects.filter(cluster=world.cluster, user=world.stranger).exists()
    assert signed_in(world.admin).post(CM_ADD, data).status_code == 302
    assert ClusterMembership.objects.get(cluster=world.cluster, user=world.stranger).role == "cluster-owner"


def test_a_cluster_member_cannot_grant_cluster_owner_in_the_admin(world):
    client = signed_in(world.viewer)
    response = client.post(CM_ADD, binding("cluster", world.cluster, world.viewer, "cluster-owner"))
    assert "You may not add this cluster membership to alpha." in response.content.decode()
    own = ClusterMembership.objects.get(cluster=world.cluster, user=world.viewer)
    assert client.post(cm_change(own), binding("cluster", world.cluster, world.viewer, "cluster-owner")).status_code == 403
    assert ClusterMembership.objects.get(pk=own.pk).role == "cluster-member"


def test_moving_ones_own_cluster_membership_to_another_cluster_is_refused(world, reader_group):
    own = ClusterMembership.objects.get(cluster=world.other_cluster, user=world.stranger)
    data = binding("cluster", world.cluster, world.stranger, "cluster-owner")
    response = signed_in(world.stranger).post(cm_change(own), data)
    assert "You may not move this cluster membership to alpha." in response.content.decode()
    assert ClusterMembership.objects.get(pk=own.pk).cluster == world.other_cluster
    assert signed_in(world.admin).post(cm_change(own), data).status_code == 302
    assert ClusterMembership.objects.get(pk=own.pk).cluster == world.cluster


def test_moving_ones_own_project_membership_to_another_project_is_refused(world, reader_group):
    own = ProjectMembership.objects.get(project=world.other_project, user=world.stranger)
    data = binding("project", world.project, world.stranger, "project-owner")
    response = signed_in(world.stranger).post(pm_change(own), data)
    assert "You may not move this project membership to alpha/web." in response.content.decode()
    assert ProjectMembership.objects.get(pk=own.pk).project == world.other_project
    assert signed_in(world.admin).post(pm_change(own), data).status_code == 302
    assert ProjectMembership.objects.get(pk=own.pk).project == world.project


def test_a_project_member_cannot_grant_project_owner_in_the_admin(world):
    world.member.is_staff = True
    world.member.save()
    client = signed_in(world.member)
    response = client.post(PM_ADD, binding("project", world.project, world.member, "project-owner"))
    assert "You may not add this project membership to alpha/web." in response.content.decode()
    own = ProjectMembership.objects.get(project=world.project, user=world.member)
    assert client.post(pm_change(own), binding("project", world.project, world.member, "project-owner")).status_code == 403
    assert ProjectMembership.objects.get(pk=own.pk).role == "project-member"


def test_only_administrators_bind_global_roles_in_the_admin(world):
    data = {"role": "administrator", "user": world.owner.pk, "group": ""}
    assert signed_in(world.owner).post("/admin/portal/globalrolebinding/add/", data).status_code == 403
    assert not GlobalRoleBinding.objects.filter(user=world.owner, role="administrator").exists()
    assert signed_in(world.admin).post("/admin/portal/globalrolebinding/add/", data).status_code == 302
    assert GlobalRoleBinding.objects.filter(user=world.owner, role="administrator").exists()


def test_even_members_allowed_to_invite_grant_no_role_above_their_own_in_the_admin(world, member_may_invite):
    world.member.is_staff = True
    world.member.save()
    team = Group.objects.create(name="web-devs")
    world.member.groups.add(team)
    client = signed_in(world.member)
    response = client.post(PM_ADD, binding("project", world.project, None, "project-owner", group=team))
    assert "You may not grant the role project-owner in alpha/web" in response.content.decode()
    assert not ProjectMembership.objects.filter(group=team).exists()
    # The same through the project's membership inline.
    inline = {
        "cluster": world.cluster.pk, "name": "web", "description": "", "resource_quota": "{}",
        "namespace_default_quota": "{}", "container_default_limits": "{}",
        "memberships-TOTAL_FORMS": "1", "memberships-INITIAL_FORMS": "0",
        "memberships-0-role": "project-owner", "memberships-0-user": "", "memberships-0-group": team.pk,
    }
    response = client.post(f"/admin/projects/project/{world.project.pk}/change/", inline)
    assert "You may not grant the role project-owner in alpha/web" in response.content.decode()
    assert not ProjectMembership.objects.filter(group=team).exists()
    response = client.post(f"/admin/projects/project/{world.project.pk}/change/", {**inline, "memberships-0-role": "project-member"})
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert ProjectMembership.objects.get(group=team).role == "project-member"


def test_a_cluster_owner_grants_through_the_cluster_inline_only_in_their_cluster(world):
    client = signed_in(world.owner)
    own = ClusterMembership.objects.get(cluster=world.cluster, user=world.viewer)
    data = {
        "name": "alpha", "slug": world.cluster.slug, "description": "", "labels": "{}", "driver": "sandbox",
        "provider": world.cluster.provider, "driver_config": "{}",
        "memberships-TOTAL_FORMS": "1", "memberships-INITIAL_FORMS": "1",
        "memberships-0-id": own.pk, "memberships-0-cluster": world.cluster.pk,
        "memberships-0-role": "cluster-owner", "memberships-0-user": world.viewer.pk, "memberships-0-group": "",
    }
    response = client.post(f"/admin/clusters/cluster/{world.cluster.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert ClusterMembership.objects.get(pk=own.pk).role == "cluster-owner"
    # The viewer may not change the cluster, so not its memberships either.
    response = signed_in(world.stranger).post(f"/admin/clusters/cluster/{world.cluster.pk}/change/", data)
    assert response.status_code in (302, 403, 404)


def test_bulk_actions_and_delete_reach_only_rows_the_user_may_change(world):
    client = signed_in(world.viewer)  # a cluster member: sees cluster A and its memberships
    response = client.post("/admin/clusters/cluster/", {"action": "remove_clusters", "_selected_action": [world.cluster.pk]}, follow=True)
    assert "Skipped the selected rows you may not delete." in response.content.decode()
    assert Cluster.objects.get(pk=world.cluster.pk).state == ClusterState.ACTIVE
    owner_row = ClusterMembership.objects.get(cluster=world.cluster, user=world.owner)
    client.post("/admin/clusters/clustermembership/", {"action": "delete_selected", "_selected_action": [owner_row.pk], "post": "yes"})
    assert ClusterMembership.objects.filter(pk=owner_row.pk).exists()
    assert client.post(f"/admin/clusters/clustermembership/{owner_row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ClusterMembership.objects.filter(pk=owner_row.pk).exists()
    # The owner may.
    signed_in(world.owner).post("/admin/clusters/cluster/", {"action": "remove_clusters", "_selected_action": [world.cluster.pk]})
    assert Cluster.objects.get(pk=world.cluster.pk).state == ClusterState.REMOVING


def test_adding_and_importing_clusters_in_the_admin_need_the_global_permissions(world):
    sandbox = {
        "name": "try-it", "slug": "", "description": "", "labels": "{}", "driver": "sandbox", "provider": "kwok",
        "driver_config": '{"nodes": 2}', "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
    }
    viewer = signed_in(world.viewer)
    assert "needs the global permission “Create clusters”" in viewer.post("/admin/clusters/cluster/add/", sandbox).content.decode()
    response = viewer.get("/admin/clusters/cluster/import/", follow=True)
    assert response.redirect_chain[-1][0] == "/admin/clusters/cluster/"
    assert "needs the global permission “Create clusters”" in response.content.decode()
    GlobalRoleBinding.objects.create(user=world.viewer, role="clusters-create")
    assert "needs the global permission “Use the sandbox driver”" in viewer.post("/admin/clusters/cluster/add/", sandbox).content.decode()
    assert viewer.get("/admin/clusters/cluster/import/").status_code == 200
    assert not Cluster.objects.filter(name="try-it").exists()
    assert signed_in(world.owner).post("/admin/clusters/cluster/add/", sandbox).status_code == 302
    assert Cluster.objects.get(name="try-it").memberships.get(user=world.owner).role == "cluster-owner"


# --- through the API ---------------------------------------------------------------------------


def test_a_staff_user_cannot_bind_themselves_in_a_foreign_cluster_through_the_api(world):
    data = {"cluster": world.cluster.pk, "user": "stranger", "role": "cluster-owner"}
    # A cluster the stranger may not see is answered like a missing one.
    response = world.client(world.stranger).post("/api/v1/cluster-memberships/", data, format="json")
    assert response.status_code == 400 and "does not exist" in response.json()["cluster"][0]
    make_user("friend")
    assert world.client(world.viewer).post("/api/v1/cluster-memberships/", {**data, "user": "friend"}, format="json").status_code == 403
    assert not ClusterMembership.objects.filter(cluster=world.cluster, role="cluster-owner").exclude(user=world.owner).exists()
    assert world.client(world.admin).post("/api/v1/cluster-memberships/", data, format="json").status_code == 201


def test_moving_ones_own_memberships_through_the_api_is_refused(world, reader_group):
    client = world.client(world.stranger)
    own_cluster = ClusterMembership.objects.get(cluster=world.other_cluster, user=world.stranger)
    own_project = ProjectMembership.objects.get(project=world.other_project, user=world.stranger)
    response = client.patch(f"/api/v1/cluster-memberships/{own_cluster.pk}/", {"cluster": world.cluster.pk}, format="json")
    assert response.status_code == 403
    response = client.patch(f"/api/v1/project-memberships/{own_project.pk}/", {"project": world.project.pk}, format="json")
    assert response.status_code == 403
    assert ClusterMembership.objects.get(pk=own_cluster.pk).cluster == world.other_cluster
    assert ProjectMembership.objects.get(pk=own_project.pk).project == world.other_project
    admin = world.client(world.admin)
    assert admin.patch(f"/api/v1/cluster-memberships/{own_cluster.pk}/", {"cluster": world.cluster.pk}, format="json").status_code == 200
    assert admin.patch(f"/api/v1/project-memberships/{own_project.pk}/", {"project": world.project.pk}, format="json").status_code == 200


def test_a_project_member_cannot_grant_project_owner_through_the_api(world):
    client = world.client(world.member)
    response = client.post(f"/api/v1/projects/{world.project.pk}/members/", {"user": "member", "role": "project-owner"}, format="json")
    assert response.status_code == 403
    own = ProjectMembership.objects.get(project=world.project, user=world.member)
    assert client.patch(f"/api/v1/project-memberships/{own.pk}/", {"role": "project-owner"}, format="json").status_code == 403
    assert ProjectMembership.objects.get(pk=own.pk).role == "project-member"


def test_only_administrators_bind_global_roles_through_the_api(world):
    data = {"user": "owner", "role": "administrator"}
    assert world.client(world.owner).post("/api/v1/global-role-bindings/", data, format="json").status_code == 403
    assert not GlobalRoleBinding.objects.filter(role="administrator").exists()
    assert world.client(world.admin).post("/api/v1/global-role-bindings/", data, format="json").status_code == 201


def test_even_members_allowed_to_invite_grant_no_role_above_their_own_through_the_api(world, group, member_may_invite):
    viewer = world.client(world.viewer)  # a cluster member
    data = {"cluster": world.cluster.pk, "group": group.name, "role": "cluster-owner"}
    response = viewer.post("/api/v1/cluster-memberships/", data, format="json")
    assert response.status_code == 403 and "you may not grant the role cluster-owner" in response.json()["detail"]
    assert viewer.post("/api/v1/cluster-memberships/", {**data, "role": "cluster-member"}, format="json").status_code == 201
    row = ClusterMembership.objects.get(group=group)
    assert viewer.patch(f"/api/v1/cluster-memberships/{row.pk}/", {"role": "cluster-owner"}, format="json").status_code == 403

    member = world.client(world.member)  # a project member
    url = f"/api/v1/projects/{world.project.pk}/members/"
    assert member.post(url, {"group": group.name, "role": "project-owner"}, format="json").status_code == 403
    assert member.post(url, {"group": group.name, "role": "project-member"}, format="json").status_code == 201
    row = ProjectMembership.objects.get(group=group)
    assert member.patch(f"/api/v1/project-memberships/{row.pk}/", {"role": "project-owner"}, format="json").status_code == 403
    assert ProjectMembership.objects.get(pk=row.pk).role == "project-member"


def test_repointing_a_higher_binding_at_oneself_is_refused(world, group, member_may_invite):
    team = Group.objects.create(name="web-devs")
    world.member.groups.add(team)
    leads = ProjectMembership.objects.create(project=world.project, group=group, role="project-owner")
    response = world.client(world.member).patch(f"/api/v1/project-memberships/{leads.pk}/", {"group": team.name}, format="json")
    assert response.status_code == 403
    world.member.is_staff = True
    world.member.save()
    response = signed_in(world.member).post(pm_change(leads), binding("project", world.project, None, "project-owner", group=team))
    assert "You may not grant the role project-owner in alpha/web" in response.content.decode()
    assert ProjectMembership.objects.get(pk=leads.pk).group == group


def test_the_people_picker_offers_only_people_the_user_shares_a_scope_with(world):
    from tests.conftest import make_user

    make_user("outsider")
    query = {"app_label": "clusters", "model_name": "clustermembership", "field_name": "user", "term": ""}

    def names(user):
        response = signed_in(user).get("/admin/autocomplete/", query)
        assert response.status_code == 200
        return {row["text"] for row in response.json()["results"]}

    assert names(world.owner) == {"owner", "viewer", "member"}
    assert names(world.stranger) == {"stranger"}
    assert {"owner", "stranger", "outsider", "nobody"} <= names(world.admin)
    assert signed_in(world.owner).get("/admin/auth/user/").status_code == 403  # the user list stays the superusers'


def test_a_global_administrator_who_is_not_a_superuser_is_unaffected(world):
    chief = make_user("chief", is_staff=True)
    GlobalRoleBinding.objects.create(user=chief, role="administrator")
    client = signed_in(chief)
    page = client.get(CM_ADD).content.decode()
    assert "alpha" in page and "bravo" in page
    assert client.post(CM_ADD, binding("cluster", world.other_cluster, world.owner, "cluster-owner")).status_code == 302
    assert ClusterMembership.objects.get(cluster=world.other_cluster, user=world.owner).role == "cluster-owner"
    own = ProjectMembership.objects.get(project=world.project, user=world.member)
    assert client.post(pm_change(own), binding("project", world.other_project, world.member, "project-owner")).status_code == 302
    assert ProjectMembership.objects.get(pk=own.pk).project == world.other_project
