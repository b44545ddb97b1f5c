"""The cluster explorer: kinds with counts, a namespace/project selector that persists, inventory
kinds from the database through the permission engine, and the kinds Corral does not keep read
from a real sandbox as the viewer (the cluster's RBAC decides; Secrets by name and type only)."""

import uuid

import pytest
from django.test import Client

from clusters.models import Cluster, ClusterMembership, Namespace, Pod, Workload
from projects.models import Project, ProjectMembership
from tests.conftest import make_user


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def explored(world):
    other_ns = Namespace.objects.create(cluster=world.cluster, uid="ns-ops", name="ops")
    Workload.objects.create(cluster=world.cluster, namespace=world.namespace, uid="w-web", name="web", kind="deployment")
    Workload.objects.create(cluster=world.cluster, namespace=other_ns, uid="w-ops", name="ops-agent", kind="daemonset")
    Pod.objects.create(cluster=world.cluster, namespace=world.namespace, uid="p-web", name="web-1", phase="Running")
    Pod.objects.create(cluster=world.cluster, namespace=other_ns, uid="p-ops", name="ops-agent-1", phase="Running")
    world.ops = other_ns
    return world


def test_the_explorer_lists_kinds_with_counts_for_the_viewer(explored):
    w = explored
    page = client_for(w.owner).get(f"/clusters/{w.cluster.pk}/explore/pods/").content.decode()
    assert "web-1" in page and "ops-agent-1" in page
    assert 'data-count="pods">2<' in page and 'data-count="workloads">2<' in page
    for title in ("Workloads", "Pods", "Services", "Ingresses", "ConfigMaps", "Secrets", "PersistentVolumeClaims", "Nodes", "Namespaces", "Events"):
        assert title in page
    # A project member sees their namespace's objects only, in the rows and in the counts.
    page = client_for(w.member).get(f"/clusters/{w.cluster.pk}/explore/pods/").content.decode()
    assert "web-1" in page and "ops-agent-1" not in page and 'data-count="pods">1<' in page
    assert "ops</option>" not in page  # nor the other namespace in the selector
    assert client_for(w.owner).get(f"/clusters/{w.cluster.pk}/explore/nonsense/").status_code == 404
    assert client_for(w.owner).get(f"/clusters/{w.cluster.pk}/explore/").status_code == 200


def test_the_namespace_or_project_selection_persists_per_cluster(explored):
    w = explored
    owner = client_for(w.owner)
    page = owner.get(f"/clusters/{w.cluster.pk}/explore/workloads/", {"scope": "namespace:ops"}).content.decode()
    assert "ops-agent" in page and 'id="workload-w-web"' not in page
    page = owner.get(f"/clusters/{w.cluster.pk}/explore/pods/").content.decode()  # remembered
    assert "ops-agent-1" in page and "web-1" not in page and 'value="namespace:ops" selected' in page
    page = owner.get(f"/clusters/{w.cluster.pk}/explore/pods/", {"scope": f"project:{w.project.pk}"}).content.decode()
    assert "web-1" in page and "ops-agent-1" not in page
    page = owner.get(f"/clusters/{w.cluster.pk}/explore/pods/", {"scope": ""}).content.decode()
    assert "web-1" in page and "ops-agent-1" in page
    # A scope the viewer may not see (another cluster's project, a stranger's namespace) is ignored.
    page = owner.get(f"/clusters/{w.cluster.pk}/explore/pods/", {"scope": f"project:{w.other_project.pk}"}).content.decode()
    assert "web-1" in page and "ops-agent-1" in page
    member = client_for(w.member)
    page = member.get(f"/clusters/{w.cluster.pk}/explore/pods/", {"scope": "namespace:ops"}).content.decode()
    assert "ops-agent-1" not in page and "web-1" in page


def test_another_tenant_gets_404_and_an_unreachable_cluster_says_so(explored):
    w = explored
    for user in (w.stranger, w.nobody):
        for kind in ("pods", "configmaps", "secrets"):
            assert client_for(user).get(f"/clusters/{w.cluster.pk}/explore/{kind}/").status_code == 404
    page = client_for(w.owner).get(f"/clusters/{w.cluster.pk}/explore/configmaps/").content.decode()
    assert 'id="explore-error"' in page and "cannot be reached" in page
    Cluster.objects.filter(pk=w.cluster.pk).update(state="unavailable", last_error="connection refused")
    page = client_for(w.owner).get(f"/clusters/{w.cluster.pk}/explore/secrets/").content.decode()
    assert "The cluster is unavailable: connection refused" in page


@pytest.mark.kube
def test_on_demand_kinds_are_read_as_the_viewer_from_a_real_cluster(db, sandbox):
    from projects import reconciler

    cluster = Cluster.objects.create(
        name=f"explore-{uuid.uuid4().hex[:6]}", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    owner, member, reader, stranger = (make_user(f"{who}-{uuid.uuid4().hex[:4]}") for who in ("owner", "member", "reader", "stranger"))
    ClusterMembership.objects.create(cluster=cluster, user=owner, role="cluster-owner")
    mine, theirs = (Project.objects.create(cluster=cluster, name=f"{n}-{uuid.uuid4().hex[:4]}") for n in ("mine", "theirs"))
    ProjectMembership.objects.create(project=mine, user=member, role="project-member")
    ProjectMembership.objects.create(project=mine, user=reader, role="read-only")
    names = {p: f"ex-{p.name}" for p in (mine, theirs)}
    for project, name in names.items():
        Namespace.objects.create(cluster=cluster, name=name, project=project)
    result = reconciler.reconcile(cluster.pk)  # creates the namespaces and their RBAC
    assert not result.errors, result.errors
    for project, name in names.items():
        Namespace.objects.filter(cluster=cluster, name=name).update(uid=f"uid-{name}")
        sandbox.kubectl("create", "configmap", f"settings-{project.name}", "-n", name, "--from-literal=colour=blue")
        sandbox.kubectl("create", "secret", "generic", f"password-{project.name}", "-n", name, "--from-literal=password=hunter2")
    try:
        url = f"/clusters/{cluster.pk}/explore"
        page = client_for(member).get(f"{url}/configmaps/").content.decode()
        assert f"settings-{mine.name}" in page and f"settings-{theirs.name}" not in page, page
        page = client_for(member).get(f"{url}/secrets/").content.decode()
        assert f"password-{mine.name}" in page and "Opaque" in page and f"password-{theirs.name}" not in page
        assert "hunter2" not in page and "aHVudGVyMg" not in page  # never the data, plain or base64
        # The read-only member's Kubernetes role (view) may not list Secrets: the cluster says no, the page says so.
        page = client_for(reader).get(f"{url}/secrets/").content.decode()
        assert 'id="explore-refused"' in page and names[mine] in page and f"password-{mine.name}" not in page
        assert f"settings-{mine.name}" in client_for(reader).get(f"{url}/configmaps/").content.decode()
        # The owner reads the whole cluster in one request; the stranger gets nothing.
        page = client_for(owner).get(f"{url}/configmaps/").content.decode()
        assert f"settings-{mine.name}" in page and f"settings-{theirs.name}" in page
        assert client_for(stranger).get(f"{url}/configmaps/").status_code == 404
    finally:
        for name in names.values():
            sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_the_counts_the_page_asks_for_after_live_changes_follow_the_viewer_and_the_selection(explored):
    w = explored
    url = f"/clusters/{w.cluster.pk}/explore/counts/"
    owner_counts = client_for(w.owner).get(url).json()
    assert owner_counts["pods"] == 2 and owner_counts["workloads"] == 2 and owner_counts["namespaces"] == 2
    member_counts = client_for(w.member).get(url).json()
    assert member_counts["pods"] == 1 and member_counts["namespaces"] == 1 and member_counts["nodes"] == 0
    owner = client_for(w.owner)
    owner.get(f"/clusters/{w.cluster.pk}/explore/pods/", {"scope": "namespace:ops"})
    assert owner.get(url).json()["pods"] == 1  # the remembered selection
    for user in (w.stranger, w.nobody):
        assert client_for(user).get(url).status_code == 404
