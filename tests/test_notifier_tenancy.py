"""Notifiers belong to a cluster or a project, and their owners manage them through the one
permission engine: another tenant cannot see, use, change or test-send them, nor read what was sent."""

import pytest

from monitoring.models import DeliveryAttempt, Notification, Notifier
from projects.models import ProjectMembership
from tests.conftest import make_user
from tests.receivers import HTTPReceiver


@pytest.fixture
def receiver():
    r = HTTPReceiver()
    yield r
    r.close()


@pytest.fixture
def project_owner(world):
    owner = make_user("web-owner")
    ProjectMembership.objects.create(project=world.project, user=owner, role="project-owner")
    return owner


def test_project_owners_manage_their_projects_notifiers_and_other_tenants_get_nothing(world, project_owner, receiver):
    owner = world.client(project_owner)
    response = owner.post("/api/v1/notifiers/", {"name": "ops", "kind": "webhook", "project": world.project.pk,
                                                  "config": {"url": f"{receiver.url}/hook", "secret": "s3cret-hmac"}}, format="json")
    assert response.status_code == 201, response.content
    notifier = response.json()
    assert notifier["cluster"] == world.cluster.pk and notifier["project"] == world.project.pk
    assert "s3cret-hmac" not in response.content.decode() and receiver.url not in response.content.decode()
    # Not the administrators' (no scope), nor another tenant's project.
    assert owner.post("/api/v1/notifiers/", {"name": "x", "kind": "webhook", "config": {"url": "https://example.com/h"}},
                      format="json").status_code == 403
    response = owner.post("/api/v1/notifiers/", {"name": "x", "kind": "webhook", "project": world.other_project.pk,
                                                 "config": {"url": "https://example.com/h"}}, format="json")
    assert response.status_code == 400 and "does not exist" in response.content.decode()

    # They use it on their project's rule and test-send it; what was sent is theirs to read.
    response = owner.post("/api/v1/alert-rules/", {"name": "pods", "project": world.project.pk, "condition": "pod-not-running",
                                                   "notifiers": [notifier["id"]]}, format="json")
    assert response.status_code == 201, response.content
    response = owner.post(f"/api/v1/notifiers/{notifier['id']}/test/", format="json")
    assert response.status_code == 200 and response.json()["status"] == "sent", response.content
    assert receiver.wait_for(1)[0]["json"]["kind"] == "test"
    sent = response.json()["id"]
    assert owner.get(f"/api/v1/notifications/{sent}/").status_code == 200
    assert Notification.objects.restrict(project_owner).filter(pk=sent).exists()
    assert DeliveryAttempt.objects.restrict(project_owner).filter(notification_id=sent).count() == 1

    # The cluster's owner runs every project: sees and manages it too.  A project member does not.
    assert world.client(world.owner).get(f"/api/v1/notifiers/{notifier['id']}/").status_code == 200
    member = world.client(world.member)
    assert member.get(f"/api/v1/notifiers/{notifier['id']}/").status_code == 404

    # Another tenant: cannot see it, list it, read what it sent, change it, test-send it or name it on a rule.
    stranger = world.client(world.stranger)
    assert notifier["id"] not in [n["id"] for n in stranger.get("/api/v1/notifiers/").json()["results"]]
    for client in (stranger, member):
        assert client.get(f"/api/v1/notifiers/{notifier['id']}/").status_code == 404
        assert client.post(f"/api/v1/notifiers/{notifier['id']}/test/", format="json").status_code == 404
        assert client.patch(f"/api/v1/notifiers/{notifier['id']}/", {"enabled": False}, format="json").status_code == 404
        assert client.delete(f"/api/v1/notifiers/{notifier['id']}/").status_code == 404
        assert client.get(f"/api/v1/notifications/{sent}/").status_code == 404
        assert sent not in [n["id"] for n in client.get("/api/v1/notifications/").json()["results"]]
    assert len(receiver.requests) == 1  # none of those sent anything
    response = stranger.post("/api/v1/alert-rules/", {"name": "steal", "cluster": world.other_cluster.pk, "condition": "node-not-ready",
                                                      "notifiers": [notifier["id"]]}, format="json")
    assert response.status_code == 400 and "does not exist" in str(response.json()["notifiers"])
    assert Notifier.objects.get(pk=notifier["id"]).enabled

    # Names are per owner: the stranger's cluster may have its own "ops" (and learns nothing of the other).
    response = stranger.post("/api/v1/notifiers/", {"name": "ops", "kind": "webhook", "cluster": world.other_cluster.pk,
                                                    "config": {"url": "https://example.com/hook"}}, format="json")
    assert response.status_code == 201, response.content
    response = owner.post("/api/v1/notifiers/", {"name": "ops", "kind": "webhook", "project": world.project.pk,
                                                 "config": {"url": "https://example.com/hook"}}, format="json")
    assert response.status_code == 400 and "already exists" in str(response.json()), response.content


def test_cluster_owners_manage_their_clusters_notifiers(world):
    owner = world.client(world.owner)
    response = owner.post("/api/v1/notifiers/", {"name": "ops", "kind": "slack", "cluster": world.cluster.pk,
                                                  "config": {"url": "https://hooks.example.com/T0/B0/xyz"}}, format="json")
    assert response.status_code == 201, response.content
    pk = response.json()["id"]
    assert world.client(world.viewer).get(f"/api/v1/notifiers/{pk}/").status_code == 404  # a cluster member: no
    assert world.client(world.stranger).get(f"/api/v1/notifiers/{pk}/").status_code == 404
    # Moving it to another tenant's cluster is refused like a cluster that does not exist.
    response = owner.patch(f"/api/v1/notifiers/{pk}/", {"cluster": world.other_cluster.pk}, format="json")
    assert response.status_code == 400 and Notifier.objects.get(pk=pk).cluster_id == world.cluster.pk
    response = owner.post("/api/v1/alert-rules/", {"name": "nodes", "cluster": world.cluster.pk, "condition": "node-not-ready",
                                                   "notifiers": [pk]}, format="json")
    assert response.status_code == 201, response.content
