"""Inventory sync against a real sandbox: what Corral stores equals what kubectl reports."""

import json
import time

import pytest

from clusters import sync
from clusters.models import Cluster, Namespace, Node, Pod, Service, Workload
from portal.locks import OwnedLock

pytestmark = pytest.mark.kube


@pytest.fixture
def cluster(db, sandbox):
    return Cluster.objects.create(
        name="sandbox", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )


def kube_json(kubectl, *args):
    return json.loads(kubectl(*args, "-o", "json"))


def wait_pods(kubectl, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = kube_json(kubectl, "get", "pods", "-l", "app=nginx")["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        if len(running) == count and len(pods) == count:
            return pods
        time.sleep(0.5)
    raise AssertionError(f"expected {count} running nginx pods")


@pytest.fixture(params=["copy", "bulk_create"])
def write_path(request, monkeypatch):
    """Both ways of writing: COPY on PostgreSQL, and bulk_create (SQLite, the local default)."""
    from clusters.kube import store

    monkeypatch.setattr(store, "USE_COPY", request.param == "copy")
    return request.param


def test_inventory_equals_what_kubectl_reports(cluster, kubectl, write_path):
    kubectl("create", "deployment", "nginx", "--image=nginx:1.27", "--replicas=3")
    pods = wait_pods(kubectl, 3)
    counts = sync.sync(cluster.pk)
    assert counts["nodes"] == 3

    nodes = {n["metadata"]["name"] for n in kube_json(kubectl, "get", "nodes")["items"]}
    assert set(Node.objects.filter(cluster=cluster).values_list("name", flat=True)) == nodes
    assert Node.objects.filter(cluster=cluster, ready=True).count() == 3
    namespaces = {n["metadata"]["name"] for n in kube_json(kubectl, "get", "namespaces")["items"]}
    assert set(Namespace.objects.filter(cluster=cluster).values_list("name", flat=True)) == namespaces

    workload = Workload.objects.get(cluster=cluster, namespace__name=kubectl.namespace, name="nginx")
    assert (workload.kind, workload.desired_replicas, workload.ready_replicas, workload.images) == ("deployment", 3, 3, ["nginx:1.27"])
    stored = Pod.objects.filter(cluster=cluster, namespace__name=kubectl.namespace)
    assert {p.uid for p in stored} == {p["metadata"]["uid"] for p in pods}
    for pod in stored:
        assert pod.workload_id == workload.pk and pod.phase == "Running" and pod.node_id is not None
    cluster.refresh_from_db()
    assert cluster.last_synced is not None and cluster.kubernetes_version.startswith("v1.36")


def test_changes_in_the_cluster_reach_the_database_on_resync(cluster, kubectl, write_path):
    kubectl("create", "deployment", "nginx", "--image=nginx:1.27", "--replicas=2")
    pods = wait_pods(kubectl, 2)
    sync.sync(cluster.pk)
    kubectl("delete", "pod", pods[0]["metadata"]["name"], "--wait=false")
    deadline = time.monotonic() + 60
    while pods[0]["metadata"]["uid"] in {p["metadata"]["uid"] for p in wait_pods(kubectl, 2)} and time.monotonic() < deadline:
        time.sleep(0.5)
    sync.sync(cluster.pk)
    assert pods[0]["metadata"]["uid"] not in set(Pod.objects.filter(cluster=cluster).values_list("uid", flat=True))
    kubectl("scale", "deployment", "nginx", "--replicas=1")
    remaining = wait_pods(kubectl, 1)
    sync.sync(cluster.pk)
    stored = set(Pod.objects.filter(cluster=cluster, namespace__name=kubectl.namespace).values_list("uid", flat=True))
    assert stored == {remaining[0]["metadata"]["uid"]}
    assert Workload.objects.get(cluster=cluster, name="nginx", namespace__name=kubectl.namespace).desired_replicas == 1


def test_a_namespace_deleted_in_the_cluster_disappears_but_project_assignment_survives_resync(cluster, kubectl, sandbox):
    from projects.models import Project

    sync.sync(cluster.pk)
    project = Project.objects.create(cluster=cluster, name="team")
    Namespace.objects.filter(cluster=cluster, name=kubectl.namespace).update(project=project)
    sync.sync(cluster.pk)
    assert Namespace.objects.get(cluster=cluster, name=kubectl.namespace).project == project
    sandbox.kubectl("create", "namespace", "short-lived")
    sync.sync(cluster.pk)
    assert Namespace.objects.filter(cluster=cluster, name="short-lived").exists()
    sandbox.kubectl("delete", "namespace", "short-lived", "--wait=false")
    deadline = time.monotonic() + 60
    while sandbox.kubectl("get", "namespace", "short-lived", check=False).returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    sync.sync(cluster.pk)
    assert not Namespace.objects.filter(cluster=cluster, name="short-lived").exists()


def test_only_one_sync_per_cluster_at_a_time(cluster):
    held = OwnedLock(sync.lock_name(cluster.pk))
    assert held.acquire()
    try:
        with pytest.raises(sync.SyncBusy):
            sync.sync(cluster.pk)
    finally:
        held.release()


def test_a_failing_cluster_backs_off(db):
    from django.core.cache import cache

    broken = Cluster.objects.create(name="broken", driver="imported", state="active", credentials={"server": "https://127.0.0.1:1", "token": "x"})
    cache.delete(sync._failures_key(broken.pk))
    assert sync.due(broken.pk)
    with pytest.raises(sync.SyncFailed, match="cannot connect"):
        sync.sync(broken.pk)
    assert not sync.due(broken.pk)
    assert sync.due(broken.pk, now=time.time() + sync.BACKOFF_BASE + 1)
    with pytest.raises(sync.SyncFailed):
        sync.sync(broken.pk)
    assert not sync.due(broken.pk, now=time.time() + sync.BACKOFF_BASE + 1)  # doubled


def test_a_resync_rewrites_only_what_changed(cluster, kubectl):
    kubectl("create", "deployment", "nginx", "--image=nginx:1.27", "--replicas=2")
    wait_pods(kubectl, 2)
    sync.sync(cluster.pk)
    before = dict(Pod.objects.filter(cluster=cluster).values_list("uid", "synced"))
    nodes_before = dict(Node.objects.filter(cluster=cluster).values_list("uid", "synced"))
    sync.sync(cluster.pk)
    assert dict(Pod.objects.filter(cluster=cluster).values_list("uid", "synced")) == before
    # kwok renews node heartbeats, so nodes may change between syncs; pods here do not.
    assert set(Node.objects.filter(cluster=cluster).values_list("uid", flat=True)) == set(nodes_before)
    kubectl("label", "pod", "-l", "app=nginx", "touched=yes")
    sync.sync(cluster.pk)
    after = dict(Pod.objects.filter(cluster=cluster, namespace__name=kubectl.namespace).values_list("uid", "synced"))
    assert all(after[uid] > before[uid] for uid in after)
    assert all(p.labels.get("touched") == "yes" for p in Pod.objects.filter(cluster=cluster, namespace__name=kubectl.namespace))


def test_what_a_cluster_sends_cannot_break_the_write(db):
    """Objects with missing fields, odd quantities and NUL characters (which PostgreSQL text and
    jsonb refuse) are stored, cleaned, rather than failing the whole sync."""
    from clusters.kube.inventory import RESOURCES, write
    from clusters.models import ClusterEvent

    cluster = Cluster.objects.create(name="odd", driver="imported", state="active")
    data = {name: [] for name in RESOURCES}
    data["namespaces"] = [{"metadata": {"name": "ns", "uid": "u-ns", "resourceVersion": "1"}}]
    data["nodes"] = [{"metadata": {"name": "n\x00ode", "uid": "u-node", "labels": {"a": "b\x00c"}},
                      "status": {"allocatable": {"cpu": "lots", "memory": "12Qi"}}}]
    data["pods"] = [{"metadata": {"name": "p", "uid": "u-pod", "namespace": "ns"}, "spec": {}, "status": {}}]
    data["events"] = [{"metadata": {"name": "e", "uid": "u-ev", "namespace": "ns"}, "type": "Warning",
                       "reason": "x" * 500, "message": "bad \x00 byte", "lastTimestamp": "not a time"}]
    counts = write(cluster, data)
    assert counts["nodes"] == 1 and counts["pods"] == 1 and counts["events"] == 1
    node = Node.objects.get(cluster=cluster)
    assert node.name == "node" and node.labels == {"a": "bc"} and node.cpu_allocatable_m == 0
    event = ClusterEvent.objects.get(cluster=cluster)
    assert event.message == "bad  byte" and len(event.reason) == 128 and event.last_seen is None


def _inventory_statements(queries):
    """The SQL of ``queries`` that touched the inventory tables: (verb, table) pairs."""
    tables = {m._meta.db_table for m in (Namespace, Node, Pod, Service, Workload)}
    found = []
    for query in queries:
        sql = query["sql"].lstrip().upper()
        verb = sql.split(None, 1)[0]
        for table in tables:
            if f'"{table.upper()}"' in sql:
                found.append((verb, table))
    return found


def test_a_resync_of_an_unchanged_cluster_reads_each_table_once_and_writes_nothing(cluster, kubectl):
    """The resync compares every list with one read of the stored rows per resource (every workload
    kind in one), whatever the number of objects, and writes nothing for what did not change."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    kubectl("create", "deployment", "nginx", "--image=nginx:1.27", "--replicas=2")
    wait_pods(kubectl, 2)
    sync.sync(cluster.pk)
    with CaptureQueriesContext(connection) as small:
        sync.sync(cluster.pk)
    kubectl("scale", "deployment", "nginx", "--replicas=6")
    wait_pods(kubectl, 6)
    sync.sync(cluster.pk)
    with CaptureQueriesContext(connection) as large:
        sync.sync(cluster.pk)
    for captured in (small, large):
        statements = _inventory_statements(captured.captured_queries)
        writes = [s for s in statements if s[0] in ("INSERT", "UPDATE", "DELETE", "COPY") and s[1] != Node._meta.db_table]
        assert writes == []  # nodes excepted: kwok renews their heartbeats between syncs
        reads = [table for verb, table in statements if verb == "SELECT"]
        assert reads.count(Pod._meta.db_table) == 1 and reads.count(Workload._meta.db_table) == 1
        assert reads.count(Namespace._meta.db_table) == 1
    # Flat: 6 pods cost the queries 2 did (a node's heartbeat may add its own write).
    assert len(large.captured_queries) <= len(small.captured_queries) + 2


def test_a_resync_removes_a_deleted_workload_of_one_kind_and_keeps_the_others(cluster, kubectl):
    kubectl("create", "deployment", "nginx", "--image=nginx:1.27", "--replicas=1")
    kubectl("create", "cronjob", "tick", "--image=busybox", "--schedule=0 0 1 1 *", "--", "true")
    wait_pods(kubectl, 1)
    sync.sync(cluster.pk)
    stored = Workload.objects.filter(cluster=cluster, namespace__name=kubectl.namespace)
    assert set(stored.values_list("kind", "name")) == {("deployment", "nginx"), ("cronjob", "tick")}
    kubectl("delete", "cronjob", "tick")
    kubectl("create", "job", "once", "--image=busybox", "--", "true")
    sync.sync(cluster.pk)
    assert set(stored.values_list("kind", "name")) == {("deployment", "nginx"), ("job", "once")}
    nginx = stored.get(name="nginx")
    assert set(Pod.objects.filter(cluster=cluster, namespace__name=kubectl.namespace, owner_kind="ReplicaSet")
               .values_list("workload_id", flat=True)) == {nginx.pk}
