"""The watcher's batched write path (clusters.watcher.Writers, clusters.kube.changes): a writer
writes a cluster's consecutive changes in one transaction and keeps the watcher's guarantees:
per-cluster order, nothing older over newer, no buried uid brought back, a deletion and a
re-creation under the same name both applied in order, live events only after the commit (once,
each to the audience the permission engine gives its row), a database error mid-batch costs
nothing half-written.  Real PostgreSQL and Redis; the watch events are fed to the writers as the
event loop would queue them."""

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from clusters import watcher
from clusters.kube import store
from clusters.models import Cluster, InventoryTombstone, Namespace, Node, Pod
from clusters.watcher import Change, ClusterWatch, Writers
from portal import events, permissions
from projects.models import Project

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(monkeypatch):
    """What leaves for the channel layer: one list per trip."""
    trips = []
    monkeypatch.setattr(events, "_send_many", lambda items: trips.append(list(items)))
    return trips


@pytest.fixture
def cluster():
    cluster = Cluster.objects.create(name="batch", slug="batch", driver="imported", state="active", api_endpoint="https://x", credentials={})
    Namespace.objects.create(cluster=cluster, uid="ns-1", name="web", resource_version="1")
    return cluster


def pod(name, uid, version, phase="Running", namespace="web"):
    return {"metadata": {"name": name, "uid": uid, "namespace": namespace, "resourceVersion": str(version)},
            "spec": {"nodeName": "", "containers": [{"name": "c", "image": "nginx"}]}, "status": {"phase": phase}}


def node(name, uid, version, heartbeat="2026-01-01T00:00:00Z", ready="True"):
    return {"metadata": {"name": name, "uid": uid, "resourceVersion": str(version)},
            "status": {"conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": heartbeat}], "allocatable": {"cpu": "2"}}}


def write(watch, *changes, pool_items=None):
    Writers.work([(watch.cluster_id, Change(watch, *c)) for c in changes] if pool_items is None else pool_items)


def heard(trips):
    return [(message["event"], message["data"].get("uid")) for trip in trips for _, message in trip]


def test_a_clusters_changes_are_written_in_one_transaction_in_order_and_heard_after_it_in_one_trip(cluster, sent):
    watch = ClusterWatch(cluster.pk, None, pool=object())
    with CaptureQueriesContext(connection) as queries:
        write(watch, ("pods", "ADDED", pod("a", "u-a", 10, "Pending")), ("pods", "MODIFIED", pod("a", "u-a", 11, "Running")),
              ("pods", "ADDED", pod("b", "u-b", 12)), ("pods", "DELETED", pod("b", "u-b", 13)))
    assert dict(Pod.objects.filter(cluster=cluster).values_list("uid", "phase")) == {"u-a": "Running"}
    assert Pod.objects.get(uid="u-a").resource_version == "11"
    assert InventoryTombstone.objects.filter(cluster=cluster, uid="u-b").exists()
    # the last state of each object: a pod added and deleted in the batch is only heard deleted
    assert heard(sent) == [("pod.updated", "u-a"), ("pod.deleted", "u-b")] and len(sent) == 1
    assert sum(q["sql"].startswith("SAVEPOINT") is False for q in queries.captured_queries) < 20  # not a dozen per event


def test_nothing_older_replaces_newer_and_a_buried_uid_does_not_come_back(cluster, sent):
    watch = ClusterWatch(cluster.pk, None, pool=object())
    write(watch, ("pods", "ADDED", pod("a", "u-a", 20)))
    InventoryTombstone.objects.create(cluster=cluster, uid="u-dead")
    sent.clear()
    write(watch, ("pods", "MODIFIED", pod("a", "u-a", 15, "Failed")), ("pods", "ADDED", pod("dead", "u-dead", 30)))
    assert dict(Pod.objects.filter(cluster=cluster).values_list("uid", "phase")) == {"u-a": "Running"}
    assert heard(sent) == []  # refused writes are not announced


def test_a_namespace_deleted_and_made_again_in_one_batch_ends_with_the_new_one(cluster, sent):
    watch = ClusterWatch(cluster.pk, None, pool=object())
    write(watch, ("pods", "ADDED", pod("a", "u-a", 5)))
    old = {"metadata": {"name": "web", "uid": "ns-1", "resourceVersion": "6"}}
    new = {"metadata": {"name": "web", "uid": "ns-2", "resourceVersion": "8"}, "status": {"phase": "Active"}}
    write(watch, ("namespaces", "DELETED", old), ("namespaces", "ADDED", new), ("pods", "ADDED", pod("b", "u-b", 9)))
    namespace = Namespace.objects.get(cluster=cluster, name="web")
    assert namespace.uid == "ns-2" and namespace.resource_version == "8"
    assert InventoryTombstone.objects.filter(cluster=cluster, uid="ns-1").exists()
    # the old namespace's pod went with it; the pod made after it is in the new one
    assert list(Pod.objects.filter(cluster=cluster).values_list("uid", "namespace_id")) == [("u-b", namespace.pk)]


def test_a_heartbeat_that_changes_nothing_visible_only_moves_the_resource_version_and_is_not_heard(cluster, sent):
    watch = ClusterWatch(cluster.pk, None, pool=object())
    write(watch, ("nodes", "ADDED", node("n1", "u-n1", 100)), ("nodes", "ADDED", node("n2", "u-n2", 101)))
    sent.clear()
    with CaptureQueriesContext(connection) as queries:
        write(watch, ("nodes", "MODIFIED", node("n1", "u-n1", 200, heartbeat="2026-01-01T00:01:00Z")),
              ("nodes", "MODIFIED", node("n2", "u-n2", 201, heartbeat="2026-01-01T00:01:00Z")))
    # The stream's last change of each node is what the database holds: no transaction at all, and
    # the versions wait for the next save of where the watches got to.
    assert queries.captured_queries == [] and heard(sent) == []
    assert dict(Node.objects.filter(cluster=cluster).values_list("name", "resource_version")) == {"n1": "100", "n2": "101"}
    watch.server = "https://x"
    watch._save({"nodes": "201"})
    assert dict(Node.objects.filter(cluster=cluster).values_list("name", "resource_version")) == {"n1": "200", "n2": "201"}
    # a visible change is written and heard
    write(watch, ("nodes", "MODIFIED", node("n1", "u-n1", 300, ready="False")))
    assert not Node.objects.get(uid="u-n1").ready and heard(sent) == [("node.updated", "u-n1")]
    # an older heartbeat does not move the version back
    write(watch, ("nodes", "MODIFIED", node("n2", "u-n2", 150, heartbeat="2026-01-01T00:00:30Z")))
    watch._save({"nodes": "300"})
    assert Node.objects.get(uid="u-n2").resource_version == "201"


def test_a_heartbeat_the_writer_has_not_compared_yet_reads_the_row_once_and_moves_only_its_version(cluster, sent):
    """Nodes stored by a list (or another watcher): the first heartbeat is compared with the row
    (one read, one UPDATE of the versions, not a write per node); the next ones with that."""
    Node.objects.create(cluster=cluster, uid="u-n1", name="n1", resource_version="100", ready=True, roles=["worker"],
                        conditions=[{"type": "Ready", "status": "True", "reason": None, "message": None}],
                        allocatable={"cpu": "2"}, cpu_allocatable_m=2000)
    watch = ClusterWatch(cluster.pk, None, pool=object())
    created = Node.objects.get(uid="u-n1").created_in_cluster
    obj = node("n1", "u-n1", 200, heartbeat="2026-01-01T00:01:00Z")
    assert created is None and "creationTimestamp" not in obj["metadata"]
    with CaptureQueriesContext(connection) as queries:
        write(watch, ("nodes", "MODIFIED", obj))
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert 0 < len(statements) <= 6, statements  # the lock, one read, one UPDATE: not a write per node
    assert Node.objects.get(uid="u-n1").resource_version == "200" and heard(sent) == []
    with CaptureQueriesContext(connection) as queries:
        write(watch, ("nodes", "MODIFIED", node("n1", "u-n1", 201, heartbeat="2026-01-01T00:02:00Z")))
    assert queries.captured_queries == []


def test_a_node_changed_and_changed_back_in_one_batch_ends_as_its_last_change(cluster, sent):
    """What the writer holds of a node is not compared with a change that follows another change of
    it in the same batch: ready, not ready, ready again ends ready."""
    watch = ClusterWatch(cluster.pk, None, pool=object())
    write(watch, ("nodes", "ADDED", node("n1", "u-n1", 100)))
    write(watch, ("nodes", "MODIFIED", node("n1", "u-n1", 101, ready="False")), ("nodes", "MODIFIED", node("n1", "u-n1", 102)))
    row = Node.objects.get(uid="u-n1")
    assert row.ready and row.resource_version == "102"


def test_a_new_nodes_stream_compares_its_changes_with_the_database_again(cluster, sent):
    """A nodes watch that starts again may start from a newer version (a relist's) than the last
    one delivered: its first change of a node is compared with the row, not with what the writer
    held, so a node that a relist stored changed, and that changed back, is written back."""
    watch = ClusterWatch(cluster.pk, None, pool=object())
    Writers.work([(cluster.pk, Change(watch, "nodes", "ADDED", node("n1", "u-n1", 100), stream=1))])
    Node.objects.filter(uid="u-n1").update(ready=False, resource_version="500")  # a relist stored it not ready
    with CaptureQueriesContext(connection) as queries:  # the same stream: the database is not asked
        Writers.work([(cluster.pk, Change(watch, "nodes", "MODIFIED", node("n1", "u-n1", 101, heartbeat="2026-01-01T00:01:00Z"), stream=1))])
    assert queries.captured_queries == []
    Writers.work([(cluster.pk, Change(watch, "nodes", "MODIFIED", node("n1", "u-n1", 600, heartbeat="2026-01-01T00:02:00Z"), stream=2))])
    row = Node.objects.get(uid="u-n1")
    assert row.ready and row.resource_version == "600"

def test_other_work_of_a_cluster_runs_between_its_changes_in_order_and_clusters_do_not_wait_for_each_other(cluster, sent):
    other = Cluster.objects.create(name="other", slug="other", driver="imported", state="active", api_endpoint="https://y", credentials={})
    Namespace.objects.create(cluster=other, uid="ns-o", name="web")
    ours, theirs = ClusterWatch(cluster.pk, None, pool=object()), ClusterWatch(other.pk, None, pool=object())
    seen = []
    items = [
        (cluster.pk, Change(ours, "pods", "ADDED", pod("a", "u-a", 1))),
        (other.pk, Change(theirs, "pods", "ADDED", pod("x", "u-x", 1))),
        (cluster.pk, lambda: seen.append(sorted(Pod.objects.values_list("uid", flat=True)))),
        (cluster.pk, Change(ours, "pods", "ADDED", pod("b", "u-b", 2))),
        (None, lambda: seen.append(sorted(Pod.objects.values_list("uid", flat=True)))),
    ]
    write(None, pool_items=items)
    # our read ran after our first change and before our second; the drain after everything
    assert "u-a" in seen[0] and "u-b" not in seen[0]
    assert seen[1] == ["u-a", "u-b", "u-x"]


def test_a_database_error_mid_batch_leaves_nothing_half_written_and_the_batch_is_written_once_it_answers(cluster, sent, monkeypatch):
    """The connection fails at the batch's DELETE, after its upsert ran (an OperationalError raised
    by an execute wrapper, as a dropped connection raises it): the transaction rolls back, the
    writer holds the batch and writes it whole when the database answers; its events leave once."""
    watch = ClusterWatch(cluster.pk, None, pool=object())
    monkeypatch.setattr(watcher.time, "sleep", lambda seconds: None)
    failures = []

    def flaky(execute, sql, params, many, context):
        if sql.startswith("DELETE") and "clusters_pod" in sql and not failures:
            failures.append(sql)
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    real = watcher._close_quietly
    monkeypatch.setattr(watcher, "_close_quietly", lambda: None)  # the test's wrapper lives on this connection
    write(watch, ("pods", "ADDED", pod("keep", "u-keep", 1)))
    sent.clear()
    with connection.execute_wrapper(flaky):
        write(watch, ("pods", "ADDED", pod("new", "u-new", 2)), ("pods", "DELETED", pod("keep", "u-keep", 3)))
    monkeypatch.setattr(watcher, "_close_quietly", real)
    assert failures  # it did fail once
    assert sorted(Pod.objects.filter(cluster=cluster).values_list("uid", flat=True)) == ["u-new"]
    assert heard(sent) == [("pod.updated", "u-new"), ("pod.deleted", "u-keep")]  # once, not twice


def test_a_row_the_database_refuses_is_left_out_with_a_warning_and_the_rest_of_the_batch_is_stored(cluster, sent):
    """A batch is written first without a savepoint per table; PostgreSQL refusing one row (a
    restart count past its integer column) spoils that transaction, so the batch is written again
    carefully: the refused pod is named on the cluster's page, the others are stored, each heard once."""
    watch = ClusterWatch(cluster.pk, None, pool=object())
    bad = pod("bad", "u-bad", 2)
    bad["status"]["containerStatuses"] = [{"name": "c", "restartCount": 2**40}]
    with CaptureQueriesContext(connection) as queries:
        write(watch, ("pods", "ADDED", pod("a", "u-a", 1)), ("pods", "ADDED", bad), ("pods", "ADDED", pod("b", "u-b", 3)))
    assert sorted(Pod.objects.filter(cluster=cluster).values_list("uid", flat=True)) == ["u-a", "u-b"]
    [warning] = Cluster.objects.get(pk=cluster.pk).sync_warnings
    assert (warning["uid"], warning["name"]) == ("u-bad", "bad") and "out of range" in warning["error"]
    assert sorted(heard(sent)) == [("pod.updated", "u-a"), ("pod.updated", "u-b")]
    sql = [q["sql"] for q in queries.captured_queries]
    first_insert = next(i for i, q in enumerate(sql) if q.startswith('INSERT INTO "clusters_pod"'))
    assert not any(q.startswith("SAVEPOINT") for q in sql[:first_insert])  # the fast way first
    assert any(q.startswith("SAVEPOINT") for q in sql[first_insert:])  # then the careful one


@pytest.mark.parametrize("count", [2, store.VALUES_ROWS + 5])  # one statement, or through COPY
def test_the_rows_an_upsert_returns_are_the_rows_stored_and_not_the_refused(cluster, count):
    from clusters.kube import inventory

    namespace = Namespace.objects.get(cluster=cluster)
    rows = []
    for i in range(count):
        obj = pod(f"p{i}", f"u-{i}", 10)
        obj["metadata"]["labels"] = {"app": "web", "n": str(i)}
        obj["metadata"]["creationTimestamp"] = "2026-01-02T03:04:05Z"
        rows.append(inventory.pod_fields(obj) | {"namespace_id": namespace.pk})
    store.upsert(Pod, cluster, rows)
    for row in rows:
        row["resource_version"] = "11"
    rows[0]["resource_version"] = "9"  # older than stored: refused
    written = []
    store.upsert(Pod, cluster, rows, written=written)
    assert sorted(p.uid for p in written) == sorted(f"u-{i}" for i in range(1, count))
    written = [p for p in written if p.uid == "u-1"]
    stored = Pod.objects.get(cluster=cluster, uid="u-1")
    fields = [f.attname for f in Pod._meta.concrete_fields]
    assert {f: getattr(written[0], f) for f in fields} == {f: getattr(stored, f) for f in fields}
    assert written[0].labels == {"app": "web", "n": "1"} and written[0].created_in_cluster.year == 2026


def test_the_live_events_of_a_batch_go_to_each_rows_own_audience(cluster, sent):
    """One batch, pods in a project's namespace and outside it: each event's groups are the
    engine's audience for that pod (a project member hears only the pod in the project)."""
    project = Project.objects.create(cluster=cluster, name="team")
    Namespace.objects.create(cluster=cluster, uid="ns-t", name="team-ns", project=project)
    watch = ClusterWatch(cluster.pk, None, pool=object())
    sent.clear()
    write(watch, ("pods", "ADDED", pod("mine", "u-mine", 1, namespace="team-ns")), ("pods", "ADDED", pod("theirs", "u-theirs", 2)))
    assert len(sent) == 1
    groups = {message["data"]["uid"]: set(g) for trip in sent for g, message in trip}
    for uid in ("u-mine", "u-theirs"):
        row = Pod.objects.select_related("namespace").get(uid=uid)
        assert groups[uid] == events.audience_groups(f"cluster-{cluster.pk}", permissions.audience(row))
    assert any(f"project-{project.pk}" in g for g in groups["u-mine"])
    assert not any(f"project-{project.pk}" in g for g in groups["u-theirs"])


@pytest.mark.asyncio
async def test_a_batch_reaches_a_subscribed_websocket_in_order_through_redis_and_not_another_tenants(cluster):
    """The events of a batch travel as one message per channel group (``live.events``); a
    subscriber hears each, in order, once; a user with no role in the cluster cannot follow it."""
    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import User

    from tests.test_websocket import connect

    admin = await sync_to_async(lambda: User.objects.create_superuser("batch-admin", "", "pw-batch-admin-1"))()
    stranger = await sync_to_async(lambda: User.objects.create_user("batch-stranger", "", "pw-batch-stranger-1"))()
    socket, connected, _ = await connect(admin)
    other, other_connected, _ = await connect(stranger)
    assert connected and other_connected
    for s in (socket, other):
        await s.send_json_to({"action": "subscribe", "group": f"cluster-{cluster.pk}"})
        await s.receive_json_from(timeout=10)
    watch = ClusterWatch(cluster.pk, None, pool=object())
    await sync_to_async(write)(watch, ("pods", "ADDED", pod("a", "u-a", 1, "Pending")), ("pods", "ADDED", pod("b", "u-b", 2)),
                               ("pods", "DELETED", pod("c", "u-c", 3)))
    got = []
    while len(got) < 3:
        message = await socket.receive_json_from(timeout=10)
        if message.get("type") == "event":
            got.append((message["event"], message["data"]["uid"]))
    assert got == [("pod.updated", "u-a"), ("pod.updated", "u-b"), ("pod.deleted", "u-c")]
    assert await socket.receive_nothing(timeout=0.5)  # each once
    while not await other.receive_nothing(timeout=0.5):
        assert (await other.receive_json_from()).get("type") != "event"
    await socket.disconnect()
    await other.disconnect()


def test_a_nodes_stream_that_starts_where_the_last_ended_continues_its_chain_and_another_start_does_not():
    watch = ClusterWatch(1, None, pool=Writers(count=1))  # (its tick saves where it got to: nothing, no server)
    watch.versions["nodes"] = "5"  # resumed from a stored version
    watch._nodes_stream_starts()
    first = watch.nodes_stream
    watch._handle(1, "nodes", {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
    watch._nodes_stream_starts()  # the next stream, from the bookmark its own stream reached
    assert watch.nodes_stream == first
    watch.versions["nodes"] = "12"  # a relist's version
    watch._nodes_stream_starts()
    assert watch.nodes_stream == first + 1
