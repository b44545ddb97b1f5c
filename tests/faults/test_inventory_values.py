"""Values a cluster sends that PostgreSQL cannot hold as they are, against a real sandbox: a pod
whose image holds a NUL character and one whose image holds a literal backslash followed by
u0000 are both stored (the first cleaned, the second intact), by a resync and by the watcher; an
object Corral cannot store at all is skipped, logged and shown as a sync warning; nothing else in
the cluster is affected."""

import time

import pytest

from clusters import sync
from clusters.kube.inventory import apply_change
from clusters.models import Cluster, ClusterEvent, Pod
from clusters.watcher import ClusterWatch, writers
from tests.faults.inventory_match import assert_matches

pytestmark = pytest.mark.kube

NUL = "x\x00"  # "x\u0000" in JSON
LITERAL = "x\\u0000"  # "x\\u0000" in JSON: x, a backslash, then u0000


def make_cluster(sandbox, name="values"):
    return Cluster.objects.create(
        name=name, driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )


def create_pods(api, namespace):
    node = api.get("/api/v1/nodes")["items"][0]["metadata"]["name"]
    uids = {}
    for name, image in (("nul", NUL), ("literal", LITERAL), ("plain", "nginx:1.27")):
        pod = api.create(f"/api/v1/namespaces/{namespace}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"odd": "yes"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": image}]},
        })
        uids[name] = pod["metadata"]["uid"]
    assert api.get(f"/api/v1/namespaces/{namespace}/pods/nul")["spec"]["containers"][0]["image"] == NUL
    return uids


def assert_images_stored(cluster, uids):
    images = {name: Pod.objects.get(cluster=cluster, uid=uid).images for name, uid in uids.items()}
    assert images == {"nul": ["x"], "literal": [LITERAL], "plain": ["nginx:1.27"]}


def test_nul_and_literal_backslash_u0000_images_are_stored_by_a_resync(db, sandbox, kube_namespace):
    cluster = make_cluster(sandbox)
    api = sandbox.api()
    uids = create_pods(api, kube_namespace)
    counts = sync.sync(cluster.pk)
    assert counts["pods"] >= 3
    assert_images_stored(cluster, uids)
    cluster.refresh_from_db()
    assert cluster.sync_warnings == []
    # a second resync finds nothing to rewrite and nothing to refuse
    synced = dict(Pod.objects.filter(cluster=cluster, uid__in=uids.values()).values_list("uid", "synced"))
    sync.sync(cluster.pk)
    assert dict(Pod.objects.filter(cluster=cluster, uid__in=uids.values()).values_list("uid", "synced")) == synced
    assert_matches(cluster, api, timeout=30, before_each=lambda: sync.sync(cluster.pk))


@pytest.mark.django_db(transaction=True)
def test_nul_and_literal_backslash_u0000_images_are_stored_by_the_watcher(sandbox, kube_namespace):
    cluster = make_cluster(sandbox, "values-live")
    api = sandbox.api()
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    try:
        deadline = time.monotonic() + 60
        while not watch.following.is_set() or "pods" not in watch.versions:
            assert time.monotonic() < deadline, "the watcher never listed the cluster"
            time.sleep(0.1)
        uids = create_pods(api, kube_namespace)  # these arrive as watch events
        deadline = time.monotonic() + 30
        while Pod.objects.filter(cluster=cluster, uid__in=uids.values()).count() < 3:
            assert time.monotonic() < deadline, "the watch events never reached the database"
            time.sleep(0.1)
        assert_images_stored(cluster, uids)
        assert_matches(cluster, api, timeout=30)
    finally:
        watch.stop(wait=10)
        writers().drain()


def test_an_object_corral_cannot_store_is_skipped_and_shown_the_rest_is_stored(db, sandbox, kube_namespace, caplog):
    """A Warning event whose involvedObject.kind is longer than Corral's column: the API server
    does not check that field, PostgreSQL refuses the row.  The sync still succeeds."""
    cluster = make_cluster(sandbox, "values-warn")
    api = sandbox.api()
    uids = create_pods(api, kube_namespace)
    event = {"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "Odd", "message": "too long a kind",
             "metadata": {"name": "odd-event"}, "involvedObject": {"kind": "K" * 80, "name": "p", "namespace": kube_namespace},
             "lastTimestamp": "2030-01-01T00:00:00Z", "firstTimestamp": "2030-01-01T00:00:00Z", "count": 1,
             "source": {"component": "test"}}
    bad = api.create(f"/api/v1/namespaces/{kube_namespace}/events", event)
    good = api.create(f"/api/v1/namespaces/{kube_namespace}/events", {
        **event, "metadata": {"name": "fine-event"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": kube_namespace}})
    sync.sync(cluster.pk)
    stored = set(ClusterEvent.objects.filter(cluster=cluster).values_list("uid", flat=True))
    assert good["metadata"]["uid"] in stored and bad["metadata"]["uid"] not in stored
    assert_images_stored(cluster, uids)
    cluster.refresh_from_db()
    warnings = [w for w in cluster.sync_warnings if w["namespace"] == kube_namespace]
    assert [(w["resource"], w["name"], w["uid"]) for w in warnings] == [("events", "odd-event", bad["metadata"]["uid"])]
    assert "value too long" in warnings[0]["error"]
    assert "odd-event" in caplog.text and "not stored" in caplog.text
    assert_matches(cluster, api, timeout=30, before_each=lambda: sync.sync(cluster.pk))


def test_a_watch_event_corral_cannot_store_is_skipped_and_shown(db, sandbox, kube_namespace):
    """The same for one watch event: a pod whose owner's name is longer than Corral's column
    (made up here: the garbage collector would delete a real pod with a missing owner)."""
    cluster = make_cluster(sandbox, "values-watch-warn")
    sync.sync(cluster.pk)
    pod = {"metadata": {"name": "odd", "namespace": kube_namespace, "uid": "odd-uid", "resourceVersion": "1",
                        "ownerReferences": [{"kind": "Thing", "name": "o" * 300, "uid": "x", "controller": True}]},
           "spec": {"containers": [{"image": NUL}]}, "status": {}}
    assert apply_change(cluster, "pods", "ADDED", pod) == (None, None)
    cluster.refresh_from_db()
    assert [(w["namespace"], w["name"]) for w in cluster.sync_warnings if w["resource"] == "pods"] == [(kube_namespace, "odd")]
    assert not Pod.objects.filter(cluster=cluster, uid="odd-uid").exists()
