"""A cluster whose API server serves only some APIs (an aggregated API whose backend is down, a
group turned off with --runtime-config) is synced for what it serves, stays available, and shows
what is missing; the watcher does not watch what is not served.  On a sandbox of its own (its API
server is restarted with other flags)."""

import logging

import pytest
from django.test import Client

from clusters import health, sync
from clusters.models import ClusterMembership, Node, Workload
from clusters.sandbox import Sandbox
from clusters.watcher import ClusterWatch
from tests.conftest import make_user
from tests.kube_fixtures import imported_cluster, require_kube_binaries
from tests.waiting import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def partial_sandbox(tmp_path):
    require_kube_binaries()
    sandbox = Sandbox("partial", tmp_path)
    sandbox.up(nodes=1)
    try:
        yield sandbox
    finally:
        sandbox.down()


def _broken_api_service(sandbox):
    """An APIService whose Service has no endpoints: discovery of its group fails (503)."""
    api = sandbox.api()
    api.create("/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "nothing-behind"},
        "spec": {"ports": [{"port": 443, "protocol": "TCP"}]}})
    api.create("/apis/apiregistration.k8s.io/v1/apiservices", {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.broken.example.com"},
        "spec": {"group": "broken.example.com", "version": "v1", "groupPriorityMinimum": 100, "versionPriority": 100,
                 "insecureSkipTLSVerify": True, "service": {"namespace": "default", "name": "nothing-behind", "port": 443}}})

    def unavailable():
        conditions = api.get("/apis/apiregistration.k8s.io/v1/apiservices/v1.broken.example.com").get("status", {}).get("conditions") or []
        return any(c["type"] == "Available" and c["status"] == "False" for c in conditions)

    wait_for(unavailable, 30, "the broken APIService to be reported unavailable")


def _job(sandbox):
    sandbox.api().create("/apis/batch/v1/namespaces/default/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})


def test_sync_skips_what_is_not_served_and_says_so(partial_sandbox, caplog):
    cluster = imported_cluster(partial_sandbox, "partial")
    owner, member = make_user("partial-owner"), make_user("partial-member")
    ClusterMembership.objects.create(cluster=cluster, user=owner, role="cluster-owner")
    ClusterMembership.objects.create(cluster=cluster, user=member, role="cluster-member")
    _job(partial_sandbox)
    _broken_api_service(partial_sandbox)

    # A broken aggregated API: everything else syncs; the group is named with why.
    sync.sync(cluster.pk)
    cluster.refresh_from_db()
    assert cluster.state == "active"
    assert [m["group_version"] for m in cluster.missing_apis] == ["broken.example.com/v1"]
    assert cluster.missing_apis[0]["served"] is None and "aggregated API unavailable" in cluster.missing_apis[0]["reason"]
    assert Workload.objects.filter(cluster=cluster, kind="job", name="once").exists()
    assert Node.objects.filter(cluster=cluster).count() == 1

    # batch/v1 turned off: its jobs go from the inventory (the server has none), the rest stays.
    partial_sandbox.stop_apiserver()
    partial_sandbox.start_apiserver(flags={"--runtime-config": "batch/v1=false"})
    sync.sync(cluster.pk)
    cluster.refresh_from_db()
    batch = next(m for m in cluster.missing_apis if m["group_version"] == "batch/v1")
    assert batch["served"] is False and sorted(batch["resources"]) == ["cronjobs", "jobs"]
    assert not Workload.objects.filter(cluster=cluster, kind="job").exists()
    assert Node.objects.filter(cluster=cluster).count() == 1
    assert health.check(cluster.pk) == "active"

    # The API and the page: which groups for everyone who sees the cluster, why for its owners.
    for user, reasons in ((owner, True), (member, False)):
        client = Client()
        client.force_login(user)
        body = client.get(f"/api/v1/clusters/{cluster.pk}/").json()
        listed = {m["group_version"]: m for m in body["missing_apis"]}
        assert set(listed) == {"batch/v1", "broken.example.com/v1"}
        assert bool(listed["broken.example.com/v1"]["reason"]) is reasons
        page = client.get(f"/clusters/{cluster.pk}/").content.decode()
        assert 'id="missing-apis"' in page and "batch/v1" in page
        assert ("aggregated API unavailable" in page) is reasons
    stranger = Client()
    stranger.force_login(make_user("partial-stranger"))
    assert stranger.get(f"/api/v1/clusters/{cluster.pk}/").status_code == 404

    # The watcher follows the rest and never asks for jobs (no retry loop on a 404).
    caplog.set_level(logging.INFO, logger="clusters.watcher")
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    try:
        wait_for(lambda: watch.following.is_set(), 30, "the watches to start")
        assert {"jobs", "cronjobs"} <= watch.unwatched
        partial_sandbox.api().create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "late-node"}})
        wait_for(lambda: Node.objects.filter(cluster=cluster, name="late-node").exists(), 20, "the new node through the watch")
        tried = [r.getMessage() for r in caplog.records if "jobs" in r.getMessage() and "interrupted" in r.getMessage()]
        assert tried == []
    finally:
        watch.stop(wait=5)

    # Served again: the next sync finds it and the warning goes.
    partial_sandbox.stop_apiserver()
    partial_sandbox.start_apiserver(flags={"--runtime-config": "batch/v1=true"})
    sync.sync(cluster.pk)
    cluster.refresh_from_db()
    assert [m["group_version"] for m in cluster.missing_apis] == ["broken.example.com/v1"]
    assert Workload.objects.filter(cluster=cluster, kind="job", name="once").exists()
