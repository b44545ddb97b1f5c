"""Corral's alerts reach a real Alertmanager (built from github.com/prometheus/alertmanager by
make kube-tools) through its v2 API: they show in its own API with their labels and annotations,
its silences apply to them, and they end there when they resolve in Corral."""

import subprocess
import time

import pytest
import requests

from clusters.models import Node
from monitoring import evaluate
from monitoring.models import AlertRule, Notification, Notifier
from tests.kube_fixtures import require_kube_addon
from tests.receivers import free_port

CONFIG = """
route:
  receiver: "null"
  group_wait: 0s
receivers:
  - name: "null"
"""


@pytest.fixture
def alertmanager(tmp_path):
    binary = require_kube_addon("alertmanager")
    (tmp_path / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    log = open(tmp_path / "alertmanager.log", "w")
    process = subprocess.Popen(
        [str(binary), f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "alertmanager.log").read_text()
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()


def am_alerts(url):
    return requests.get(f"{url}/api/v2/alerts", timeout=5).json()


def test_alerts_show_in_alertmanager_its_silences_apply_and_they_resolve(world, alertmanager, django_capture_on_commit_callbacks):
    notifier = Notifier.objects.create(name="team-am", kind="alertmanager", config={"url": alertmanager})
    rule = AlertRule.objects.create(name="NodeNotReady", cluster=world.cluster, condition="node-not-ready", for_seconds=0,
                                    severity="critical", group_wait_seconds=0, group_interval_seconds=0)
    rule.notifiers.add(notifier)
    node = Node.objects.create(cluster=world.cluster, uid="n1", name="worker-1", ready=False)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate.evaluate_cluster(world.cluster.pk)
    assert Notification.objects.get(notifier=notifier).status == "sent"

    shown = am_alerts(alertmanager)
    assert len(shown) == 1, shown
    labels = shown[0]["labels"]
    assert labels == {"alertname": "NodeNotReady", "cluster": "alpha", "target": "node/worker-1", "severity": "critical",
                      "node": "worker-1"}
    assert "worker-1" in shown[0]["annotations"]["summary"] and shown[0]["status"]["state"] == "active"
    assert "/alerts/" in shown[0]["generatorURL"]

    # A silence made in Alertmanager applies to Corral's alert.
    silence = {"matchers": [{"name": "alertname", "value": "NodeNotReady", "isRegex": False, "isEqual": True}],
               "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z", "createdBy": "test", "comment": "maintenance"}
    assert requests.post(f"{alertmanager}/api/v2/silences", json=silence, timeout=5).status_code == 200
    deadline = time.monotonic() + 10
    while am_alerts(alertmanager)[0]["status"]["state"] != "suppressed":
        assert time.monotonic() < deadline, am_alerts(alertmanager)
        time.sleep(0.2)

    node.ready = True
    node.save()
    with django_capture_on_commit_callbacks(execute=True):
        evaluate.evaluate_cluster(world.cluster.pk)
    assert Notification.objects.filter(notifier=notifier, kind="resolved", status="sent").count() == 1
    assert am_alerts(alertmanager) == []  # ended: Alertmanager lists active alerts only


def test_send_test_notification_to_alertmanager(world, alertmanager):
    notifier = Notifier.objects.create(name="team-am", kind="alertmanager", config={"url": alertmanager})
    response = world.client(world.admin).post(f"/api/v1/notifiers/{notifier.pk}/test/", format="json")
    assert response.status_code == 200 and response.json()["status"] == "sent", response.content
    assert [a["labels"]["alertname"] for a in am_alerts(alertmanager)] == ["CorralTestNotification"]
