"""Two real watcher processes share clusters registered against a real sandbox by leases in Redis
(clusters.shards); one is SIGKILLed: the other takes its clusters over within 30 s, resuming their
watches from where the dead one stored them (no relist), and nothing that changed in between is
missed: every cluster's pods in Corral equal what the cluster lists, uid and resourceVersion.  The
dead one is noticed when its Redis connection closes, not once its lease lapses."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from clusters import shards
from clusters.models import Cluster, ClusterWatchState, Pod
from tests.waiting import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = 4


def start_watcher(member, log):
    db = connection.settings_dict
    env = {**os.environ, "PORTAL_DB_CONN_MAX_AGE": "0",
           "PORTAL_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "PORTAL_REDIS_URL": settings.REDIS_URL,
           # The changes the watchers announce are queued for Celery where no test's worker takes them.
           "PORTAL_CELERY_BROKER_URL": settings.REDIS_URL.rsplit("/", 1)[0] + "/15"}
    return subprocess.Popen([sys.executable, "manage.py", "watch_clusters", "--poll", "1", "--member-id", member],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def pod_differences(clusters, api, namespace):
    listed = {o["metadata"]["uid"]: o["metadata"]["resourceVersion"] for o in api.get(f"/api/v1/namespaces/{namespace}/pods")["items"]}
    found = []
    for cluster in clusters:
        stored = dict(Pod.objects.filter(cluster=cluster, namespace__name=namespace).values_list("uid", "resource_version"))
        if stored != listed:
            found.append(f"cluster {cluster.name}: stored {sorted(stored.items())}, the cluster lists {sorted(listed.items())}")
    return found


def test_a_killed_watchers_clusters_are_taken_over_within_30_seconds_missing_nothing(sandbox, kube_namespace):
    creds = {"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem}
    clusters = [Cluster.objects.create(name=f"shard-{i}", driver="imported", state="active", api_endpoint=sandbox.endpoint, credentials=creds)
                for i in range(CLUSTERS)]
    ids = [c.pk for c in clusters]
    for n in range(1000):  # names under which each watcher gets some of the clusters
        first, second = f"w{n}-a", f"w{n}-b"
        owned = {i for i in ids if shards.owner(i, [first, second]) == first}
        if 0 < len(owned) < len(ids):
            break
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(shards.KEY)
    api = sandbox.api()
    path = f"/api/v1/namespaces/{kube_namespace}/pods"
    node = api.get("/api/v1/nodes")["items"][0]["metadata"]["name"]

    def pod(name):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]}}

    api.create(path, pod("before"))
    with tempfile.TemporaryDirectory(prefix="corral-shards-") as tmp:
        logs = {name: open(Path(tmp) / f"{name}.log", "w+") for name in (first, second)}  # noqa: SIM115 - closed below
        procs = {name: start_watcher(name, logs[name]) for name in (first, second)}
        try:
            # Both follow their share: every cluster listed once, pods in, where each watch got to stored.
            wait_for(lambda: ClusterWatchState.objects.filter(cluster_id__in=ids).count() == CLUSTERS
                     and not pod_differences(clusters, api, kube_namespace), 120, "both watchers to list their clusters")
            time.sleep(3)  # where each watch got to is stored every 2 s
            logs[second].seek(0, os.SEEK_END)
            before_kill = logs[second].tell()  # (the first to start may have listed all, then given some up)

            procs[first].send_signal(signal.SIGKILL)
            procs[first].wait()
            killed = time.monotonic()
            # Changes that nobody follows for the first clusters until the second watcher takes them.
            for name in ("during-1", "during-2", "during-3"):
                api.create(path, pod(name))
            api.request("DELETE", f"{path}/before?gracePeriodSeconds=0")
            api.request("DELETE", f"{path}/during-2?gracePeriodSeconds=0")

            wait_for(lambda: not pod_differences(clusters, api, kube_namespace), 30, "the second watcher to take over and catch up")
            took = time.monotonic() - killed
            time.sleep(2)
            assert not pod_differences(clusters, api, kube_namespace)
            logs[second].seek(before_kill)
            output = logs[second].read()
            # It took the dead one's clusters over, resuming their watches: no relist.
            assert output.count("resuming its watches where they were left") == len(owned), output[-3000:]
            assert "listing it" not in output, output[-3000:]
            # Noticed by its Redis connection closing, not after its lease (clusters.shards).
            assert f"watchers: {first} ended (connection to Redis closed)" in output, output[-3000:]
            print(f"taken over and caught up {took:.1f} s after the kill")
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            for log in logs.values():
                log.close()
            client.delete(shards.KEY)
