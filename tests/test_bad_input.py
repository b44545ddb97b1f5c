"""Bad input gets a 400 naming the problem, nothing is written, and never a 500."""

import json

import pytest

from clusters.models import Cluster
from portal.models import AuditEvent, Operation
from projects.models import Project


@pytest.fixture
def owner(world):
    return world.client(world.owner)


def test_malformed_json_is_a_400(world, owner):
    response = owner.generic("POST", "/api/v1/projects/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_a_json_list_instead_of_an_object_is_a_400(world, owner):
    response = owner.post("/api/v1/projects/", [1, 2], format="json")
    assert response.status_code == 400


def test_wrong_type_names_the_field(world, owner):
    count = Project.objects.count()
    response = owner.post("/api/v1/projects/", {"cluster": world.cluster.pk, "name": ["x"], "resource_quota": "lots"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert "name" in body and "resource_quota" in body
    assert Project.objects.count() == count


def test_bad_quantity_names_the_key(world, owner):
    response = owner.post(
        "/api/v1/projects/", {"cluster": world.cluster.pk, "name": "q", "resource_quota": {"limits.cpu": "four"}}, format="json"
    )
    assert response.status_code == 400
    assert "limits.cpu" in str(response.json()["resource_quota"])


def test_unknown_quota_key_is_refused(world, owner):
    response = owner.post("/api/v1/projects/", {"cluster": world.cluster.pk, "name": "q", "resource_quota": {"gpus": "1"}}, format="json")
    assert response.status_code == 400
    assert "unknown quota 'gpus'" in str(response.json())


def test_read_only_field_is_refused_by_name(world, owner):
    response = owner.patch(f"/api/v1/clusters/{world.cluster.pk}/", {"state": "error"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"state": ["read-only field"]}
    world.cluster.refresh_from_db()
    assert world.cluster.state == "active"


def test_cluster_slug_is_derived_from_the_name_not_given(world, owner):
    response = owner.post("/api/v1/clusters/", {"name": "n", "slug": "mine", "driver": "sandbox"}, format="json")
    assert response.status_code == 400
    assert response.json()["slug"] == ["read-only field"]
    assert not Cluster.objects.filter(name="n").exists()


@pytest.mark.parametrize("name", ["Has Capitals & Spaces", "under_score", "-leading", "x" * 100, "dots.not.allowed", "ünïcödé", "!!!"])
def test_any_cluster_name_gets_a_kubernetes_slug(world, owner, name):
    from portal.validators import validate_dns1123_label

    response = owner.post("/api/v1/clusters/", {"name": name, "driver": "sandbox"}, format="json")
    assert response.status_code == 201, response.content
    validate_dns1123_label(response.json()["slug"])


def test_sandbox_node_count_is_checked(world, owner):
    response = owner.post("/api/v1/clusters/", {"name": "n", "driver": "sandbox", "driver_config": {"nodes": 0}}, format="json")
    assert response.status_code == 400
    assert "nodes" in str(response.json()["driver_config"])


def test_imported_clusters_are_not_created_without_credentials(world, owner):
    response = owner.post("/api/v1/clusters/", {"name": "n", "driver": "imported"}, format="json")
    assert response.status_code == 400
    assert "import" in str(response.json()["driver"])


def test_duplicate_name_is_a_400_not_a_500(world, owner):
    response = owner.post("/api/v1/clusters/", {"name": "alpha", "driver": "sandbox"}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()


def test_oversized_body_is_refused(world, owner, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"cluster": world.cluster.pk, "name": "big", "description": "x" * 5000})
    response = owner.generic("POST", "/api/v1/projects/", body, content_type="application/json")
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["detail"]
    assert not Project.objects.filter(name="big").exists()


def test_unknown_object_is_a_404(world, owner):
    assert owner.get("/api/v1/clusters/999999/").status_code == 404
    assert owner.get("/api/v1/clusters/not-a-number/").status_code == 404


def test_binding_needs_exactly_one_subject(world, owner, group):
    response = owner.post("/api/v1/project-memberships/", {"project": world.project.pk, "role": "read-only"}, format="json")
    assert response.status_code == 400
    response = owner.post(
        "/api/v1/project-memberships/",
        {"project": world.project.pk, "role": "read-only", "user": "member", "group": group.name},
        format="json",
    )
    assert response.status_code == 400


def test_duplicate_binding_says_so(world, owner):
    response = owner.post("/api/v1/project-memberships/", {"project": world.project.pk, "role": "project-owner", "user": "member"}, format="json")
    assert response.status_code == 400
    assert "already has a role" in str(response.json())


def test_invalid_state_transition_is_a_400(world):
    op = Operation.objects.create(kind="provision", cluster=world.cluster, created_by=world.owner, status="succeeded")
    response = world.client(world.owner).post(f"/api/v1/operations/{op.pk}/cancel/")
    assert response.status_code == 400
    assert "cannot go from succeeded to cancelled" in str(response.json())
    op.refresh_from_db()
    assert op.status == "succeeded"


def test_removing_a_cluster_twice_is_refused(world, owner):
    assert owner.delete(f"/api/v1/clusters/{world.cluster.pk}/").status_code == 202
    response = owner.delete(f"/api/v1/clusters/{world.cluster.pk}/")
    assert response.status_code == 400
    assert "already being removed" in str(response.json())


def test_notifier_config_is_validated(world):
    admin = world.client(world.admin)
    response = admin.post("/api/v1/notifiers/", {"name": "mail", "kind": "email", "config": {"recipients": ["not-an-address"]}}, format="json")
    assert response.status_code == 400
    assert "not an e-mail address" in str(response.json())
    response = admin.post("/api/v1/notifiers/", {"name": "hook", "kind": "webhook", "config": {}}, format="json")
    assert response.status_code == 400


def test_alert_rule_threshold_required_for_restarts(world, owner):
    response = owner.post("/api/v1/alert-rules/", {"name": "r", "cluster": world.cluster.pk, "condition": "pod-restarts"}, format="json")
    assert response.status_code == 400
    assert "threshold" in response.json()


def test_failed_writes_leave_no_audit_event(world, owner):
    before = AuditEvent.objects.count()
    owner.post("/api/v1/projects/", {"cluster": world.cluster.pk, "name": "q", "resource_quota": {"pods": "many"}}, format="json")
    assert AuditEvent.objects.count() == before
