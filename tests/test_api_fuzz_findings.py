"""What schema fuzzing found, one test per cause: each is now a 4xx naming the problem, never a 500."""

import json
import uuid

import pytest

from clusters.kube.client import ClusterConnectionError
from clusters.models import Namespace
from portal.models import Operation
from projects.models import Project
from tests.test_projects_kube import client_for, cluster, owner  # noqa: F401  (fixtures for the kube tests)

HUGE = 10**30


@pytest.fixture
def api(world):
    return world.client(world.owner)


@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/projects/abc/members/"),
    ("post", "/api/v1/projects/abc/members/"),
    ("get", "/api/v1/projects/abc/namespaces/"),
    ("post", "/api/v1/projects/abc/namespaces/"),
    ("get", "/api/v1/projects/1e30/"),
    ("get", f"/api/v1/clusters/{HUGE}/"),
    ("post", f"/api/v1/projects/{HUGE}/members/"),
    ("delete", "/api/v1/pods/abc/"),
])
def test_a_non_numeric_or_huge_id_in_the_path_is_a_404(api, method, path):
    response = getattr(api, method)(path, {}, format="json")
    assert response.status_code == 404, response.content
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("path, field", [
    ("/api/v1/pods/?cluster=1e30", "cluster"),
    (f"/api/v1/pods/?cluster={HUGE}", "cluster"),
    (f"/api/v1/pods/?workload={HUGE}", "workload"),
    (f"/api/v1/namespaces/?project={HUGE}", "project"),
    ("/api/v1/projects/?cluster=1e30", "cluster"),
    (f"/api/v1/operations/?cluster={HUGE}", "cluster"),
    (f"/api/v1/alerts/?rule={HUGE}", "rule"),
    (f"/api/v1/project-memberships/?cluster={HUGE}", "cluster"),
])
def test_an_id_filter_out_of_range_is_a_400_naming_it(api, path, field):
    response = api.get(path)
    assert response.status_code == 400, response.content
    assert field in response.json()


@pytest.mark.parametrize("path, body, field", [
    ("/api/v1/projects/", {"cluster": HUGE, "name": "x"}, "cluster"),
    ("/api/v1/workloads/", {"cluster": HUGE, "namespace": "web-prod", "name": "x", "image": "nginx"}, "cluster"),
    ("/api/v1/alert-rules/", {"name": "r", "cluster": HUGE, "condition": "node-not-ready", "notifiers": [HUGE]}, "cluster"),
    ("/api/v1/cluster-memberships/", {"cluster": HUGE, "role": "cluster-member", "user": "viewer"}, "cluster"),
])
def test_an_id_out_of_range_in_a_body_is_a_400_naming_it(api, path, body, field):
    response = api.post(path, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_json_nested_1000_deep_is_a_400(api):
    body = "[" * 1000 + "]" * 1000  # 2 KB
    response = api.generic("POST", "/api/v1/projects/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper than 64 levels" in response.json()["detail"]


def test_json_nested_deeper_than_the_cap_inside_a_field_is_a_400(world, api):
    deep = "x"
    for _ in range(100):
        deep = {"a": deep}
    body = json.dumps({"cluster": world.cluster.pk, "name": "deep", "resource_quota": deep})
    response = api.generic("POST", "/api/v1/projects/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]
    assert not Project.objects.filter(name="deep").exists()


def test_json_at_a_reasonable_depth_still_parses(world, api):
    deep = "1"
    for _ in range(10):
        deep = {"a": deep}
    response = api.post("/api/v1/projects/", {"cluster": world.cluster.pk, "name": "fine", "resource_quota": deep}, format="json")
    assert response.status_code == 400 and "resource_quota" in response.json()  # refused for its content, not its depth


def test_project_deletion_with_namespaces_that_fails_leaves_the_project_and_says_why(world, api, django_capture_on_commit_callbacks):
    # world.cluster is a sandbox row without a running cluster: the deletion in the cluster fails.
    project = Project.objects.create(cluster=world.cluster, name="doomed")
    Namespace.objects.create(cluster=world.cluster, uid="d1", name="doomed-ns", project=project)
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.delete(f"/api/v1/projects/{project.pk}/?delete_namespaces=true")
    assert response.status_code == 202, response.content
    for callback in callbacks:  # the task, run eagerly: it raises, as in a worker, after recording why
        try:
            callback()
        except ClusterConnectionError:
            pass
    op = Operation.objects.get(pk=response.json()["id"])
    assert op.kind == "delete-project" and op.status == "failed" and op.error
    assert Project.objects.filter(pk=project.pk).exists()
    assert Namespace.objects.get(name="doomed-ns").project_id == project.pk


@pytest.mark.kube
def test_project_deletion_with_namespaces_deletes_them_in_the_cluster_then_the_project(cluster, owner, sandbox, django_capture_on_commit_callbacks):  # noqa: F811
    project = Project.objects.create(cluster=cluster, name=f"gone-{uuid.uuid4().hex[:4]}")
    name = f"gone-{uuid.uuid4().hex[:6]}"
    sandbox.kubectl("create", "namespace", name)
    Namespace.objects.create(cluster=cluster, uid="u-" + name, name=name, project=project)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).delete(f"/api/v1/projects/{project.pk}/?delete_namespaces=true")
    assert response.status_code == 202, response.content
    op = Operation.objects.get(pk=response.json()["id"])
    assert op.status == "succeeded", op.error
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not Namespace.objects.filter(cluster=cluster, name=name).exists()
    phase = sandbox.kubectl("get", "namespace", name, "-o", "jsonpath={.status.phase}", check=False)
    assert phase.returncode != 0 or phase.stdout.strip() == "Terminating"


def test_an_api_url_that_matches_nothing_is_a_json_404(api):
    for path in ("/api/v1/clusters/0.5/", "/api/v1/projects/1.5/members/", "/api/v1/no-such-thing/"):
        response = api.get(path)
        assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_an_object_given_for_a_list_is_refused(world):
    admin = world.client(world.admin)
    response = admin.post("/api/v1/alert-rules/", {"name": "r", "cluster": world.cluster.pk, "condition": "node-not-ready",
                                                   "notifiers": {}}, format="json")
    assert response.status_code == 400 and response.json() == {"notifiers": ["expected a list"]}


def test_the_api_takes_json_only(api):
    response = api.post("/api/v1/tokens/", {"description": "x"}, format="multipart")
    assert response.status_code == 415


@pytest.mark.parametrize("query, field", [("limit=-1", "limit"), ("limit=false", "limit"), ("offset=null", "offset"),
                                          ("ready=null", "ready"), ("cluster=", "cluster"), ("phase=", None)])
def test_query_parameters_are_checked(api, query, field):
    response = api.get(f"/api/v1/pods/?{query}")
    if field is None:  # a text filter may be empty
        assert response.status_code == 200
    else:
        assert response.status_code == 400 and field in response.json()


@pytest.mark.parametrize("body, field", [
    ({"description": "x", "read_only": 0}, "read_only"),
    ({"description": "x", "read_only": "true"}, "read_only"),
    ({"description": 5}, "description"),
    ({"expires_in_days": "7"}, "expires_in_days"),
    ({"expires_in_days": 7.0}, "expires_in_days"),
    ({"expires_in_days": True}, "expires_in_days"),
])
def test_json_values_must_have_the_documented_type(api, body, field):
    response = api.post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content


def test_a_refused_search_is_an_error_object_naming_it(api):
    response = api.get("/api/v1/nodes/?search=%00")
    assert response.status_code == 400 and response.json() == {"search": ["Null characters are not allowed."]}
