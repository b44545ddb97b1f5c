"""On a real sandbox, through the real watcher: a node made NotReady fires the rule and the
webhook receives it; it resolves when the node is Ready again."""

import json
import time

import pytest

from clusters.models import Cluster, Node
from clusters.sandbox.components import KWOK_NODE_ANNOTATION, node_manifest
from clusters.watcher import ClusterWatch
from monitoring.models import Alert, AlertRule, Notifier
from tests.receivers import HTTPReceiver

pytestmark = [pytest.mark.kube, pytest.mark.django_db(transaction=True)]


def wait_until(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def make_not_ready(sandbox, node):
    """Stop kwok's heartbeat for the node (it manages only annotated nodes), then report it NotReady
    as the node lifecycle controller would once the heartbeat is missed."""
    sandbox.kubectl("annotate", "node", node, f"{KWOK_NODE_ANNOTATION}-")
    patch = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletStopped",
                                        "message": "test: heartbeat stopped"}]}}
    sandbox.kubectl("patch", "node", node, "--subresource=status", "--type=strategic", "-p", json.dumps(patch))


def make_ready(sandbox, node):
    """kwok adopts the node again and its node-initialize stage sets it Ready."""
    sandbox.kubectl("annotate", "--overwrite", "node", node, f"{KWOK_NODE_ANNOTATION}=fake")


def own_node(sandbox, name):
    """A node of the test's own, tainted so no other test's pod lands on it (its status is played with)."""
    manifest = node_manifest(name)
    manifest["spec"]["taints"] = [{"key": "corral.test/alerts", "value": "only", "effect": "NoSchedule"}]
    sandbox.kubectl("create", "-f", "-", input=json.dumps(manifest))
    deadline = time.monotonic() + 60
    while sandbox.kubectl("get", "node", name, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}').stdout != "True":
        assert time.monotonic() < deadline, f"node {name} never became Ready"
        time.sleep(0.2)
    return name


def test_node_not_ready_fires_reaches_the_webhook_and_resolves(sandbox):
    receiver = HTTPReceiver()
    cluster = Cluster.objects.create(
        name="alerts-live", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem,
                     "client_key": sandbox.admin_key_pem},
    )
    notifier = Notifier.objects.create(name="hook", kind="webhook", config={"url": f"{receiver.url}/hook", "secret": "s"})
    rule = AlertRule.objects.create(name="node down", cluster=cluster, condition="node-not-ready", for_seconds=0, severity="critical",
                                    group_wait_seconds=0, group_interval_seconds=0)
    rule.notifiers.add(notifier)
    node = own_node(sandbox, f"kwok-alerts-{int(time.time() * 1000) % 10**8}")
    watch = ClusterWatch(cluster.pk, None)
    watch.start()
    try:
        wait_until(lambda: Node.objects.filter(cluster=cluster, name=node, ready=True).exists() and watch.following.is_set(),
                   what="the watcher's first list")
        assert not Alert.objects.filter(rule=rule).exists()
        started = time.monotonic()
        make_not_ready(sandbox, node)
        fired = receiver.wait_for(1, timeout=30)[0]["json"]
        took = time.monotonic() - started
        assert fired["kind"] == "firing" and [a["target"] for a in fired["alerts"]] == [f"node/{node}"]
        assert "KubeletStopped" in fired["alerts"][0]["message"]
        alert = Alert.objects.get(rule=rule, target=f"node/{node}")
        assert alert.state == "firing" and alert.notified_state == "firing"

        make_ready(sandbox, node)
        resolved = receiver.wait_for(2, timeout=30)[1]["json"]
        assert resolved["kind"] == "resolved" and resolved["alerts"][0]["state"] == "resolved"
        alert.refresh_from_db()
        assert alert.state == "resolved"
        print(f"node NotReady to webhook: {took:.2f}s")
    finally:
        sandbox.kubectl("delete", "node", node, "--wait=false", check=False)
        watch.stop(wait=10)
        receiver.close()
