"""Projects as the apiserver sees them: Corral reconciles a real sandbox, then kubectl impersonates
the Kubernetes user and groups Corral assigns (`--as`, `--as-group`) to prove what the cluster
itself allows."""

import json
import time
import uuid

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.test import APIClient

from clusters.models import Cluster, ClusterMembership, Namespace
from portal.models import ApiToken
from projects import desired, identity, reconciler
from projects.models import Project, ProjectMembership
from tests.conftest import make_user

pytestmark = pytest.mark.kube


@pytest.fixture
def cluster(db, sandbox):
    return Cluster.objects.create(
        name=f"sandbox-{uuid.uuid4().hex[:6]}", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )


@pytest.fixture
def owner(cluster):
    user = make_user(f"owner-{uuid.uuid4().hex[:4]}")
    ClusterMembership.objects.create(cluster=cluster, user=user, role="cluster-owner")
    return user


def client_for(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user)[1]}")
    return client


def ns_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def add_namespace(owner, project, name, **extra):
    response = client_for(owner).post(f"/api/v1/projects/{project.pk}/namespaces/", {"name": name, **extra}, format="json")
    assert response.status_code == 201, response.content
    return Namespace.objects.get(pk=response.json()["id"])


def as_user(sandbox, user, *args, groups=()):
    who = [f"--as={identity.kubernetes_user(user)}"] + [f"--as-group={g}" for g in groups]
    return sandbox.kubectl(*who, *args, check=False)


def can_i(sandbox, user, verb, resource, namespace, groups=()):
    result = as_user(sandbox, user, "auth", "can-i", verb, resource, "-n", namespace, groups=groups)
    return result.stdout.strip() == "yes"


def eventually(check, timeout=15):
    # RBAC and quota take effect through the apiserver's informers: a moment after the write.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def reconciled(cluster):
    result = reconciler.reconcile(cluster.pk)
    assert not result.errors, result.errors
    return result


def kube_json(sandbox, *args):
    return json.loads(sandbox.kubectl(*args, "-o", "json").stdout)


def test_project_roles_are_enforced_by_the_apiserver(cluster, owner, sandbox):
    web = Project.objects.create(cluster=cluster, name="web")
    batch = Project.objects.create(cluster=cluster, name="batch")
    web_ns, batch_ns = add_namespace(owner, web, ns_name("web")), add_namespace(owner, batch, ns_name("batch"))
    alice, carol = make_user("alice"), make_user("carol")
    response = client_for(owner).post(f"/api/v1/projects/{web.pk}/members/", {"user": "alice", "role": "project-member"}, format="json")
    assert response.status_code == 201, response.content
    ProjectMembership.objects.create(project=web, user=carol, role="read-only")
    reconciled(cluster)
    web_ns.refresh_from_db()
    assert web_ns.uid, "the namespace Corral made has its uid"
    labels = kube_json(sandbox, "get", "namespace", web_ns.name)["metadata"]["labels"]
    assert labels[desired.MANAGED_BY] == "corral"

    # A member creates a Deployment in their project's namespace, not in another project's.
    assert eventually(lambda: can_i(sandbox, alice, "create", "deployments", web_ns.name))
    made = as_user(sandbox, alice, "create", "deployment", "hello", "--image=nginx:1.27", "-n", web_ns.name)
    assert made.returncode == 0, made.stderr
    refused = as_user(sandbox, alice, "create", "deployment", "hello", "--image=nginx:1.27", "-n", batch_ns.name)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()

    # Read-only may get, not create.
    assert eventually(lambda: can_i(sandbox, carol, "get", "deployments", web_ns.name))
    got = as_user(sandbox, carol, "get", "deployment", "hello", "-n", web_ns.name)
    assert got.returncode == 0, got.stderr
    refused = as_user(sandbox, carol, "create", "deployment", "again", "--image=nginx:1.27", "-n", web_ns.name)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()

    # One RoleBinding per (namespace, role), listing its subjects.
    bindings = kube_json(sandbox, "get", "rolebindings", "-n", web_ns.name, "-l", desired.SELECTOR)["items"]
    assert sorted(b["metadata"]["name"] for b in bindings) == ["corral-project-member", "corral-read-only"]

    # Removing the membership removes the access.
    ProjectMembership.objects.get(project=web, user=alice).delete()
    reconciled(cluster)
    assert eventually(lambda: not can_i(sandbox, alice, "create", "deployments", web_ns.name))
    assert not can_i(sandbox, alice, "get", "deployments", web_ns.name)
    web.refresh_from_db()
    assert web.sync_state == "in-sync" and web.last_reconciled is not None


def test_quota_pool_limit_range_and_usage(cluster, owner, sandbox):
    project = Project.objects.create(
        cluster=cluster, name="quota", resource_quota={"pods": "3", "limits.cpu": "2", "limits.memory": "1Gi"},
        namespace_default_quota={"pods": "2", "limits.cpu": "1", "limits.memory": "512Mi"},
        container_default_limits={"limits.cpu": "200m", "limits.memory": "128Mi", "requests.cpu": "100m", "requests.memory": "64Mi"},
    )
    ns = add_namespace(owner, project, ns_name("quota"))
    # The pool has 1 pod left: a second namespace with the default share (2 pods) is refused.
    response = client_for(owner).post(f"/api/v1/projects/{project.pk}/namespaces/", {"name": ns_name("more")}, format="json")
    assert response.status_code == 400
    assert "pods: asks 2 but only 1 is left" in response.json()["resource_quota"][0]
    reconciled(cluster)

    def quota_ready():
        status = kube_json(sandbox, "get", "resourcequota", desired.QUOTA_NAME, "-n", ns.name).get("status") or {}
        return status.get("hard", {}).get("pods") == "2"

    assert eventually(quota_ready, timeout=30)
    pod = ["run", "--image=nginx:1.27", "--restart=Never", "-n", ns.name]
    sandbox.kubectl(*pod[:1], "first", *pod[1:])
    resources = kube_json(sandbox, "get", "pod", "first", "-n", ns.name)["spec"]["containers"][0]["resources"]
    assert resources == {"limits": {"cpu": "200m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}}
    sandbox.kubectl(*pod[:1], "second", *pod[1:])
    third = sandbox.kubectl(*pod[:1], "third", *pod[1:], check=False)
    assert third.returncode != 0 and "exceeded quota" in third.stderr, third.stderr

    def used_is_reported():
        reconciled(cluster)
        project.refresh_from_db()
        return project.quota_status.get("used", {}).get("pods") == "2"

    assert eventually(used_is_reported, timeout=30)
    body = client_for(owner).get(f"/api/v1/projects/{project.pk}/").json()
    assert body["quota"]["pool"]["pods"] == "3" and body["quota"]["allocated"]["pods"] == "2"
    assert body["quota"]["used"]["pods"] == "2" and body["quota"]["left"]["limits.memory"] == "512Mi"
    # Bare pods left in the session's shared sandbox would stop other tests' drains.
    sandbox.kubectl("delete", "pod", "first", "second", "-n", ns.name, "--wait=false")


def test_hand_edits_are_repaired_and_unmanaged_objects_left_alone(cluster, owner, sandbox):
    project = Project.objects.create(cluster=cluster, name="repair", namespace_default_quota={"pods": "5"})
    ns = add_namespace(owner, project, ns_name("repair"))
    dev = make_user("dev")
    ProjectMembership.objects.create(project=project, user=dev, role="project-member")
    reconciled(cluster)
    sandbox.kubectl("create", "rolebinding", "hand-made", "--clusterrole=view", "--user=someone", "-n", ns.name)
    sandbox.kubectl("delete", "rolebinding", "corral-project-member", "-n", ns.name)
    sandbox.kubectl("patch", "resourcequota", desired.QUOTA_NAME, "-n", ns.name, "--type=merge", "-p", '{"spec":{"hard":{"pods":"50"}}}')
    assert eventually(lambda: not can_i(sandbox, dev, "create", "deployments", ns.name))

    result = reconciled(cluster)
    assert f"rolebindings/{ns.name}/corral-project-member" in result.created
    assert f"resourcequotas/{ns.name}/{desired.QUOTA_NAME}" in result.updated
    assert eventually(lambda: can_i(sandbox, dev, "create", "deployments", ns.name))
    hard = kube_json(sandbox, "get", "resourcequota", desired.QUOTA_NAME, "-n", ns.name)["spec"]["hard"]
    assert hard == {"pods": "5"}
    assert sandbox.kubectl("get", "rolebinding", "hand-made", "-n", ns.name, check=False).returncode == 0
    # Nothing left to do: a second pass writes nothing.
    again = reconciled(cluster)
    assert (again.created, again.updated, again.deleted) == ([], [], [])

    # Moving the namespace out of the project removes what Corral put there, not the namespace.
    response = client_for(owner).patch(f"/api/v1/namespaces/{ns.pk}/", {"project": None}, format="json")
    assert response.status_code == 200, response.content
    reconciled(cluster)
    assert kube_json(sandbox, "get", "rolebindings,resourcequotas,limitranges", "-n", ns.name, "-l", desired.SELECTOR)["items"] == []
    assert sandbox.kubectl("get", "namespace", ns.name, check=False).returncode == 0


def test_cluster_roles_map_to_cluster_admin_and_read_of_basics(cluster, owner, sandbox):
    viewer = make_user("cluster-viewer")
    ClusterMembership.objects.create(cluster=cluster, user=viewer, role="cluster-member")
    reconciled(cluster)
    assert eventually(lambda: as_user(sandbox, viewer, "auth", "can-i", "list", "nodes").stdout.strip() == "yes")
    assert as_user(sandbox, viewer, "auth", "can-i", "create", "namespaces").stdout.strip() == "no"
    assert as_user(sandbox, viewer, "auth", "can-i", "list", "secrets", "-A").stdout.strip() == "no"
    assert as_user(sandbox, owner, "auth", "can-i", "*", "*").stdout.strip() == "yes"


@pytest.mark.ldap
def test_group_binding_works_for_a_directory_user(cluster, owner, sandbox, directory):
    client = Client(REMOTE_ADDR="10.9.0.1")
    assert client.post("/login/", {"username": "bob", "password": "bob-password"}).status_code == 302
    me = client.get("/api/v1/me/").json()
    assert me["kubernetes_user"] == "corral:user:bob" and "corral:group:developers" in me["kubernetes_groups"]
    project = Project.objects.create(cluster=cluster, name="dev")
    ns = add_namespace(owner, project, ns_name("dev"))
    ProjectMembership.objects.create(project=project, group=Group.objects.get(name="developers"), role="project-member")
    reconciled(cluster)
    bob = type("U", (), {"get_username": lambda self: "bob"})()
    assert eventually(lambda: can_i(sandbox, bob, "create", "deployments", ns.name, groups=me["kubernetes_groups"]))
    assert not can_i(sandbox, bob, "create", "deployments", ns.name)  # not without the group


def test_unavailable_cluster_shows_why_and_catches_up_when_back(cluster, owner, sandbox):
    project = Project.objects.create(cluster=cluster, name="later")
    Namespace.objects.create(cluster=cluster, name=ns_name("later"), project=project)
    good = cluster.credentials
    Cluster.objects.filter(pk=cluster.pk).update(credentials={**good, "server": "https://127.0.0.1:1"})
    cluster.refresh_from_db()
    result = reconciler.reconcile(cluster.pk)
    project.refresh_from_db()
    assert result.errors and project.sync_state == "error" and "cannot connect" in project.sync_error
    cluster.credentials = good
    cluster.save()
    reconciled(cluster)
    project.refresh_from_db()
    assert project.sync_state == "in-sync" and project.sync_error == ""


def test_a_project_namespace_deleted_by_hand_is_made_again(cluster, owner, sandbox):
    from clusters import sync

    project = Project.objects.create(cluster=cluster, name="keep", namespace_default_quota={"pods": "5"})
    ns = add_namespace(owner, project, ns_name("keep"))
    reconciled(cluster)
    sync.sync(cluster.pk)
    assert Namespace.objects.get(pk=ns.pk).uid != ""
    sandbox.kubectl("delete", "namespace", ns.name, "--wait=true", "--timeout=60s")
    sync.sync(cluster.pk)
    forgotten = Namespace.objects.get(pk=ns.pk)  # kept, in its project, waiting to be made again
    assert (forgotten.uid, forgotten.project_id) == ("", project.pk)
    reconciled(cluster)
    assert sandbox.kubectl("get", "namespace", ns.name, check=False).returncode == 0
    assert kube_json(sandbox, "get", "resourcequota", desired.QUOTA_NAME, "-n", ns.name)["spec"]["hard"] == {"pods": "5"}
