"""A generic test base every API endpoint inherits, as NetBox's APIViewTestCases: anonymous,
no permission, other tenant's object, view-only, CRUD, audit trail, query counts.

A subclass names its ``basename`` (the router's), ``model``, and how to make objects:
``make(world, cluster, project, namespace, i)`` returns a saved object of the cluster (or
project/namespace) given; ``create_data(world)`` is a valid POST body for cluster A;
``update_data`` a valid PATCH body.  Read-only endpoints set ``read_only = True``.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from portal.models import AuditEvent


class APIViewTests:
    basename = None
    model = None
    read_only = False
    update_data = None
    delete_status = 204
    viewer_may_create = False  # e.g. projects: a cluster member may create projects in the cluster

    # --- hooks ----------------------------------------------------------------------------
    def make(self, world, cluster, project, namespace, i):
        raise NotImplementedError

    def create_data(self, world):
        raise NotImplementedError

    # --- helpers --------------------------------------------------------------------------
    def list_url(self):
        return reverse(f"{self.basename}-list")

    def detail_url(self, obj):
        return reverse(f"{self.basename}-detail", args=[obj.pk])

    def ours(self, world, i=0):
        return self.make(world, world.cluster, world.project, world.namespace, i)

    def theirs(self, world, i=0):
        return self.make(world, world.other_cluster, world.other_project, world.other_namespace, i)

    # --- the tests every endpoint gets ----------------------------------------------------
    def test_anonymous_is_refused(self, world):
        obj = self.ours(world)
        client = world.client(None)
        assert client.get(self.list_url()).status_code == 401
        assert client.get(self.detail_url(obj)).status_code == 401

    def test_bad_token_is_refused(self, world):
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Bearer crl_000000000000.not-a-real-secret")
        response = client.get(self.list_url())
        assert response.status_code == 401
        assert "token" in response.json()["detail"]

    def test_list_shows_only_what_the_user_may_see(self, world):
        mine, other = self.ours(world), self.theirs(world)
        ids = {row["id"] for row in world.client(world.viewer).get(self.list_url()).json()["results"]}
        assert mine.pk in ids
        assert other.pk not in ids
        admin_ids = {row["id"] for row in world.client(world.admin).get(self.list_url(), {"limit": 1000}).json()["results"]}
        assert {mine.pk, other.pk} <= admin_ids

    def test_user_without_any_role_sees_nothing(self, world):
        self.ours(world)
        response = world.client(world.nobody).get(self.list_url())
        assert response.status_code == 200
        assert response.json()["count"] == 0

    def test_other_tenants_object_is_not_found(self, world):
        other = self.theirs(world)
        client = world.client(world.owner)
        assert client.get(self.detail_url(other)).status_code == 404
        if not self.read_only:
            assert client.patch(self.detail_url(other), self.update_data, format="json").status_code == 404
            assert client.delete(self.detail_url(other)).status_code == 404
        assert self.model.objects.filter(pk=other.pk).exists()

    def test_list_query_count_stays_flat(self, world):
        client = world.client(world.viewer)
        self.ours(world, 0)
        client.get(self.list_url())  # warm caches (content types, sessions)
        with CaptureQueriesContext(connection) as few:
            assert client.get(self.list_url()).status_code == 200
        for i in range(1, 8):
            self.ours(world, i)
        with CaptureQueriesContext(connection) as many:
            body = client.get(self.list_url()).json()
        assert body["count"] >= 8
        assert len(many) == len(few), [q["sql"] for q in many.captured_queries]

    def test_read_only_token_cannot_write(self, world):
        if self.read_only:
            pytest.skip("read-only endpoint")
        obj = self.ours(world)
        client = world.client(world.owner, read_only=True)
        assert client.get(self.detail_url(obj)).status_code == 200
        response = client.patch(self.detail_url(obj), self.update_data, format="json")
        assert response.status_code == 403

    def test_viewer_may_read_but_not_change(self, world):
        obj = self.ours(world)
        client = world.client(world.viewer)
        assert client.get(self.detail_url(obj)).status_code == 200
        if self.read_only:
            assert client.patch(self.detail_url(obj), {}, format="json").status_code == 405
            assert client.post(self.list_url(), {}, format="json").status_code == 405
            return
        before = AuditEvent.objects.count()
        assert client.patch(self.detail_url(obj), self.update_data, format="json").status_code == 403
        assert client.delete(self.detail_url(obj)).status_code == 403
        if not self.viewer_may_create:
            assert client.post(self.list_url(), self.create_data(world), format="json").status_code == 403
        assert AuditEvent.objects.count() == before

    def test_stranger_cannot_create_in_someone_elses_cluster(self, world):
        if self.read_only:
            pytest.skip("read-only endpoint")
        count = self.model.objects.count()
        response = world.client(world.stranger).post(self.list_url(), self.create_data(world), format="json")
        # A cluster or project the stranger may not see is answered as a missing one (400 "does
        # not exist"); with no such reference in the body, the add itself is refused (403).
        assert response.status_code in (400, 403), response.content
        if response.status_code == 400:
            assert "does not exist" in response.content.decode(), response.content
        assert self.model.objects.count() == count

    def test_create_update_delete_are_audited(self, world):
        if self.read_only:
            pytest.skip("read-only endpoint")
        client = world.client(world.owner)
        response = client.post(self.list_url(), self.create_data(world), format="json")
        assert response.status_code == 201, response.content
        obj = self.model.objects.get(pk=response.json()["id"])
        label = self.model._meta.label_lower
        created = AuditEvent.objects.get(object_type=label, object_id=str(obj.pk), action="create")
        assert created.username == "owner" and created.source == "api" and created.request_id is not None
        assert str(created.request_id) == response["X-Request-ID"]

        response = client.patch(self.detail_url(obj), self.update_data, format="json")
        assert response.status_code == 200, response.content
        updated = AuditEvent.objects.get(object_type=label, object_id=str(obj.pk), action="update")
        assert set(updated.after) == set(updated.before) and updated.after != updated.before

        response = client.delete(self.detail_url(obj))
        assert response.status_code == self.delete_status, response.content
        if self.delete_status == 204:
            assert not self.model.objects.filter(pk=obj.pk).exists()
            assert AuditEvent.objects.filter(object_type=label, object_id=str(obj.pk), action="delete").exists()

    def test_unknown_field_is_rejected_naming_it(self, world):
        if self.read_only:
            pytest.skip("read-only endpoint")
        count = self.model.objects.count()
        data = {**self.create_data(world), "no_such_field": 1}
        response = world.client(world.owner).post(self.list_url(), data, format="json")
        assert response.status_code == 400
        assert response.json()["no_such_field"] == ["unknown field"]
        assert self.model.objects.count() == count
