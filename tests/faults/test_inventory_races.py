"""Watch events and resyncs of the same cluster at the same time, against a real sandbox: 1,000
random pod changes (create, update, delete) through the API while the watcher follows the cluster
and Celery-style resyncs run over and over; afterwards Corral's inventory equals what the cluster
lists, object by object (uid and resourceVersion)."""

import random
import threading
import time

import pytest
from django.db import connection

from clusters import sync
from clusters.kube import inventory
from clusters.models import Cluster, Pod
from clusters.sandbox.api import APIError
from clusters.watcher import ClusterWatch, writers
from tests.faults.inventory_match import assert_matches

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
CHANGES = 1000


def change_pods(api, namespace, nodes, rng, count, after_each=lambda done: None):
    """``count`` random changes to pods of ``namespace``; returns how many of each were made."""
    made = {"create": 0, "update": 0, "delete": 0}
    live, serial = [], 0
    path = f"/api/v1/namespaces/{namespace}/pods"
    while sum(made.values()) < count:
        action = "create" if len(live) < 5 else rng.choices(["create", "update", "delete"], [3, 4, 3])[0]
        if action == "create":
            serial += 1
            name = f"p-{serial}"
            api.create(path, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"step": "0"}},
                              "spec": {"nodeName": rng.choice(nodes), "containers": [{"name": "c", "image": "nginx"}]}})
            live.append(name)
        elif action == "update":
            name = rng.choice(live)
            try:
                pod = api.get(f"{path}/{name}")
                pod["metadata"]["labels"]["step"] = str(sum(made.values()))
                api.request("PUT", f"{path}/{name}", pod)
            except APIError as exc:
                if exc.status != 409:  # changed by kwok in between: counts as a change all the same
                    raise
        else:
            name = live.pop(rng.randrange(len(live)))
            api.request("DELETE", f"{path}/{name}?gracePeriodSeconds=0")
        made[action] += 1
        after_each(sum(made.values()))
    return made


def test_watch_events_and_resyncs_at_once_leave_the_inventory_exact(sandbox, kube_namespace, monkeypatch):
    # Small pages: each resync takes many transactions, so watch events land between them.
    monkeypatch.setattr(inventory, "PAGE", 20)
    cluster = Cluster.objects.create(
        name="races", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem},
    )
    api = sandbox.api()
    nodes = [n["metadata"]["name"] for n in api.get("/api/v1/nodes")["items"]]
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    stop, resyncs, failures = threading.Event(), [], []

    def resync_over_and_over():
        """Celery's resync and the watcher's relist (through its writer thread), by turns."""
        try:
            while not stop.is_set():
                try:
                    if len(resyncs) % 2:
                        watch.relist()
                        resyncs.append("relist")
                    else:
                        resyncs.append(sync.sync(cluster.pk))
                except sync.SyncBusy:  # the watcher's own list
                    time.sleep(0.2)
                except Exception as exc:  # noqa: BLE001 - reported by the test below
                    failures.append(exc)
        finally:
            connection.close()

    resyncer = threading.Thread(target=resync_over_and_over)
    try:
        deadline = time.monotonic() + 60
        while not watch.following.is_set() or "pods" not in watch.versions:
            assert time.monotonic() < deadline, "the watcher never listed the cluster"
            time.sleep(0.1)
        resyncer.start()
        # Resyncs stop starting 150 changes before the end, so the last one overlaps changes and
        # nothing quiet comes after it: only the watcher can put right what it might get wrong.
        made = change_pods(api, kube_namespace, nodes, random.Random(10), CHANGES,
                           after_each=lambda done: done == CHANGES - 150 and stop.set())
        resyncer.join(timeout=300)
        assert not failures, failures
        assert len(resyncs) >= 2, "a resync and a relist at least should overlap the changes"
        assert made["delete"] > 100 and made["create"] > 100 and made["update"] > 100
        assert_matches(cluster, api, timeout=60)
        assert Pod.objects.filter(cluster=cluster, namespace__name=kube_namespace).count() == made["create"] - made["delete"]
        # and a resync on its own, now that all is quiet, changes nothing
        sync.sync(cluster.pk)
        assert_matches(cluster, api, timeout=30)
    finally:
        stop.set()
        watch.stop(wait=10)
        writers().drain()
