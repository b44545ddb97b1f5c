"""Sync warnings (objects a sync could not store) name objects anywhere in a cluster: its owners
and administrators see them on the cluster page and in the API, its members and others do not."""

from django.test import Client

from clusters.kube import store
from clusters.models import Cluster

WARNING = {"resource": "pods", "namespace": "secret-team", "name": "odd-pod", "uid": "u-1", "error": "value too long"}


def test_sync_warnings_are_shown_to_cluster_owners_only(world):
    store.record_warnings(world.cluster.pk, [WARNING])
    assert Cluster.objects.get(pk=world.cluster.pk).sync_warnings == [WARNING]
    for user, sees in ((world.owner, True), (world.admin, True), (world.viewer, False), (world.member, False)):
        listed = {c["id"]: c for c in world.client(user).get("/api/v1/clusters/").json()["results"]}
        visible = world.cluster.pk in listed
        assert visible or not sees
        if visible:
            assert listed[world.cluster.pk]["sync_warnings"] == ([WARNING] if sees else []), user
        page = Client()
        page.force_login(user)
        response = page.get(f"/clusters/{world.cluster.pk}/")
        assert response.status_code == (200 if visible else 404)
        assert ("odd-pod" in response.content.decode()) is sees, user


def test_a_full_sync_replaces_the_warnings_watch_events_add_to_them(world):
    store.record_warnings(world.cluster.pk, [WARNING])
    store.record_warnings(world.cluster.pk, [{**WARNING, "uid": "u-2", "name": "other"}])
    assert [w["uid"] for w in Cluster.objects.get(pk=world.cluster.pk).sync_warnings] == ["u-1", "u-2"]
    store.record_warnings(world.cluster.pk, [], replace=True)
    assert Cluster.objects.get(pk=world.cluster.pk).sync_warnings == []
