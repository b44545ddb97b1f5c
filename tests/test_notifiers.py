"""Notifications that arrive: real SMTP (STARTTLS + AUTH), real HTTP receivers for the webhook,
Slack, Teams and PagerDuty shapes; attempts recorded, retries with back-off, grouping, resolved
notifications, test notifications, and secrets that never leave encrypted."""

import hashlib
import hmac
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from clusters.models import Node
from monitoring import delivery, evaluate
from monitoring.models import Alert, AlertRule, DeliveryAttempt, Notification, Notifier
from portal.models import AuditEvent
from tests.receivers import HTTPReceiver, SMTPReceiver, free_port

SECRET = "hmac-secret-of-the-receiver"


@pytest.fixture
def receiver():
    r = HTTPReceiver()
    yield r
    r.close()


@pytest.fixture
def smtp():
    s = SMTPReceiver()
    yield s
    s.close()


def node_rule(world, notifier, **extra):
    rule = AlertRule.objects.create(name="nodes down", cluster=world.cluster, condition="node-not-ready", for_seconds=0,
                                    severity="critical", group_wait_seconds=0, group_interval_seconds=0, **extra)
    rule.notifiers.add(notifier)
    return rule


def set_ready(world, name, ready, hooks):
    Node.objects.update_or_create(cluster=world.cluster, uid=f"uid-{name}", defaults={
        "name": name, "ready": ready,
        "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown", "reason": "NodeStatusUnknown" if not ready else "KubeletReady",
                        "message": "Kubelet stopped posting node status." if not ready else ""}],
    })
    with hooks(execute=True):
        evaluate.evaluate_cluster(world.cluster.pk)


def test_email_goes_over_starttls_with_auth_and_tells_the_alert(world, smtp, django_capture_on_commit_callbacks):
    notifier = Notifier.objects.create(name="oncall-mail", kind="email", config={
        "recipients": ["oncall@example.com"], "host": "127.0.0.1", "port": smtp.port, "starttls": True,
        "username": "corral", "password": "smtp-secret-1", "ca_cert": smtp.cert_pem, "sender": "alerts@corral.example.com",
    })
    node_rule(world, notifier)
    set_ready(world, "worker-3", False, django_capture_on_commit_callbacks)
    mail = smtp.wait_for(1)[0]
    assert mail["tls"] and mail["to"] == ["oncall@example.com"] and mail["from"] == "alerts@corral.example.com"
    assert mail["message"]["Subject"] == "[FIRING:1] nodes down on alpha"
    body = mail["message"].get_content()
    assert "node/worker-3" in body and "critical" in body and "Kubelet stopped posting node status" in body
    notification = Notification.objects.get(notifier=notifier)
    assert notification.status == "sent" and notification.attempts == 1
    assert DeliveryAttempt.objects.get(notification=notification).ok

    set_ready(world, "worker-3", True, django_capture_on_commit_callbacks)
    resolved = smtp.wait_for(2)[1]["message"]
    assert resolved["Subject"] == "[RESOLVED] nodes down on alpha" and "[RESOLVED]" in resolved.get_content()


def test_a_wrong_smtp_password_is_recorded_with_the_servers_answer(world, smtp, django_capture_on_commit_callbacks, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 1
    notifier = Notifier.objects.create(name="oncall-mail", kind="email", config={
        "recipients": ["oncall@example.com"], "host": "127.0.0.1", "port": smtp.port, "username": "corral",
        "password": "wrong", "ca_cert": smtp.cert_pem,
    })
    node_rule(world, notifier)
    set_ready(world, "worker-3", False, django_capture_on_commit_callbacks)
    notification = Notification.objects.get(notifier=notifier)
    assert notification.status == "failed" and notification.response_code == 535, notification.error
    notifier.refresh_from_db()
    assert "535" in notifier.last_error and not smtp.messages


def test_webhook_is_signed_fires_and_resolves(world, receiver, django_capture_on_commit_callbacks):
    notifier = Notifier.objects.create(name="hook", kind="webhook", config={"url": f"{receiver.url}/hook?token=abc", "secret": SECRET})
    node_rule(world, notifier)
    set_ready(world, "worker-3", False, django_capture_on_commit_callbacks)
    first = receiver.wait_for(1)[0]
    signed = hmac.new(SECRET.encode(), first["headers"]["X-Corral-Timestamp"].encode() + b"." + first["body"], hashlib.sha256).hexdigest()
    assert first["headers"]["X-Corral-Signature"] == f"sha256={signed}"
    body = first["json"]
    assert body["kind"] == "firing" and len(body["alerts"]) == 1
    alert = body["alerts"][0]
    assert alert["target"] == "node/worker-3" and alert["state"] == "firing" and alert["cluster"] == "alpha"
    assert alert["labels"] == {"node": "worker-3"} and alert["started"] and "/alerts/" in alert["link"]

    set_ready(world, "worker-3", True, django_capture_on_commit_callbacks)
    second = receiver.wait_for(2)[1]["json"]
    assert second["kind"] == "resolved" and second["alerts"][0]["state"] == "resolved" and second["alerts"][0]["resolved"]
    assert Alert.objects.get(target="node/worker-3").state == "resolved"


def test_slack_and_teams_get_their_documented_shapes(world, receiver, django_capture_on_commit_callbacks):
    slack = Notifier.objects.create(name="slack", kind="slack", config={"url": f"{receiver.url}/services/T0/B0/XXX"})
    teams = Notifier.objects.create(name="teams", kind="teams", config={"url": f"{receiver.url}/webhookb2/abc"})
    rule = node_rule(world, slack)
    rule.notifiers.add(teams)
    set_ready(world, "worker-3", False, django_capture_on_commit_callbacks)
    by_path = {r["path"]: r["json"] for r in receiver.wait_for(2)}
    posted = by_path["/services/T0/B0/XXX"]
    assert posted["text"].startswith("[FIRING:1] nodes down on alpha") and "node/worker-3" in posted["text"]
    assert posted["blocks"][0]["type"] == "header" and "node/worker-3" in posted["blocks"][1]["text"]["text"]
    card = by_path["/webhookb2/abc"]
    assert card["@type"] == "MessageCard" and card["@context"] == "https://schema.org/extensions"
    assert card["title"] == "[FIRING:1] nodes down on alpha" and card["themeColor"] == "D93F0B"
    assert card["sections"][0]["activityTitle"] == "[FIRING] node/worker-3"
    assert {"name": "Cluster", "value": "alpha"} in card["sections"][0]["facts"]


def test_pagerduty_triggers_and_resolves_with_one_dedup_key(world, receiver, django_capture_on_commit_callbacks):
    pager = Notifier.objects.create(name="pd", kind="pagerduty", config={"routing_key": "R0UTINGKEY0123456789", "url": f"{receiver.url}/v2/enqueue"})
    node_rule(world, pager)
    set_ready(world, "worker-3", False, django_capture_on_commit_callbacks)
    trigger = receiver.wait_for(1)[0]["json"]
    assert trigger["routing_key"] == "R0UTINGKEY0123456789" and trigger["event_action"] == "trigger"
    assert trigger["payload"]["summary"].startswith("nodes down: node/worker-3 on alpha")
    assert trigger["payload"]["source"] == "alpha" and trigger["payload"]["severity"] == "critical"
    assert trigger["dedup_key"].startswith("corral-")
    set_ready(world, "worker-3", True, django_capture_on_commit_callbacks)
    resolve = receiver.wait_for(2)[1]["json"]
    assert resolve == {"routing_key": "R0UTINGKEY0123456789", "event_action": "resolve", "dedup_key": trigger["dedup_key"]}


def test_a_receiver_that_is_down_is_retried_then_the_error_shows_and_the_next_alert_still_goes(world, django_capture_on_commit_callbacks, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 3
    port = free_port()  # nothing listens there yet
    notifier = Notifier.objects.create(name="hook", kind="webhook", config={"url": f"http://127.0.0.1:{port}/hook/T0KEN-IN-PATH"})
    node_rule(world, notifier)
    set_ready(world, "worker-3", False, django_capture_on_commit_callbacks)
    notification = Notification.objects.get(notifier=notifier)
    # Under eager Celery a retry is not queued with its delay; the periodic pass's redelivery is
    # what a worker would do: make the attempts here, as it would after each back-off.
    assert notification.status == "retrying" and notification.attempts == 1
    assert notification.next_attempt - timezone.now() > timedelta(seconds=settings.NOTIFY_RETRY_BASE_SECONDS - 1)
    for _ in range(2):
        delivery.attempt(notification.pk)
    notification.refresh_from_db()
    assert notification.status == "failed" and notification.attempts == 3
    attempts = list(DeliveryAttempt.objects.filter(notification=notification).values_list("number", "ok", "error"))
    assert [a[:2] for a in attempts] == [(1, False), (2, False), (3, False)]
    assert all("could not reach the receiver" in a[2] and "T0KEN-IN-PATH" not in a[2] for a in attempts)
    notifier.refresh_from_db()
    assert "could not reach the receiver" in notifier.last_error and notifier.last_error_at

    live = HTTPReceiver()
    try:
        notifier.config = {"url": f"{live.url}/hook"}
        notifier.save()
        set_ready(world, "worker-4", False, django_capture_on_commit_callbacks)
        body = live.wait_for(1)[0]["json"]
        assert sorted(a["target"] for a in body["alerts"]) == ["node/worker-3", "node/worker-4"]
        assert Notification.objects.filter(notifier=notifier, status="sent").count() == 1
    finally:
        live.close()


def test_a_receiver_answering_500_is_recorded_with_the_code(world, receiver, django_capture_on_commit_callbacks, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 1
    receiver.status = 500
    notifier = Notifier.objects.create(name="hook", kind="webhook", config={"url": f"{receiver.url}/hook"})
    node_rule(world, notifier)
    set_ready(world, "worker-3", False, django_capture_on_commit_callbacks)
    notification = Notification.objects.get(notifier=notifier)
    assert notification.status == "failed" and notification.response_code == 500 and "answered 500" in notification.error


def test_grouping_waits_batches_and_repeats(world, receiver, django_capture_on_commit_callbacks):
    notifier = Notifier.objects.create(name="hook", kind="webhook", config={"url": f"{receiver.url}/hook"})
    rule = node_rule(world, notifier)
    AlertRule.objects.filter(pk=rule.pk).update(group_wait_seconds=30, group_interval_seconds=300, repeat_interval_seconds=3600)
    set_ready(world, "worker-1", False, django_capture_on_commit_callbacks)
    set_ready(world, "worker-2", False, django_capture_on_commit_callbacks)
    delivery.due_work()
    assert not receiver.requests, "sent before group_wait"
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        delivery.due_work(now + timedelta(seconds=31))
    first = receiver.wait_for(1)[0]["json"]
    assert sorted(a["target"] for a in first["alerts"]) == ["node/worker-1", "node/worker-2"]
    # A third within group_interval waits for it; then one message tells all three.
    set_ready(world, "worker-3", False, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        delivery.due_work(now + timedelta(seconds=120))
    assert len(receiver.requests) == 1
    with django_capture_on_commit_callbacks(execute=True):
        delivery.due_work(now + timedelta(seconds=332))
    assert len(receiver.wait_for(2)[1]["json"]["alerts"]) == 3
    # Nothing new: silent until repeat_interval, then told again.
    with django_capture_on_commit_callbacks(execute=True):
        delivery.due_work(now + timedelta(seconds=1000))
    assert len(receiver.requests) == 2
    with django_capture_on_commit_callbacks(execute=True):
        delivery.due_work(now + timedelta(seconds=332 + 3601))
    assert len(receiver.wait_for(3)[2]["json"]["alerts"]) == 3


def test_a_silenced_alert_is_not_notified(world, receiver, django_capture_on_commit_callbacks):
    notifier = Notifier.objects.create(name="hook", kind="webhook", config={"url": f"{receiver.url}/hook"})
    rule = node_rule(world, notifier)
    AlertRule.objects.filter(pk=rule.pk).update(group_wait_seconds=30)
    set_ready(world, "worker-1", False, django_capture_on_commit_callbacks)
    alert = Alert.objects.get(target="node/worker-1")
    response = world.client(world.owner).post(f"/api/v1/alerts/{alert.pk}/silence/", {"duration_seconds": 3600, "reason": "maintenance"}, format="json")
    assert response.status_code == 200 and response.json()["silenced"] and response.json()["silenced_by"] == "owner"
    with django_capture_on_commit_callbacks(execute=True):
        delivery.due_work(timezone.now() + timedelta(seconds=31))
    assert not receiver.requests and not Notification.objects.exists()


def test_send_test_notification_from_the_api(world, receiver):
    notifier = Notifier.objects.create(name="hook", kind="webhook", config={"url": f"{receiver.url}/hook", "secret": SECRET})
    response = world.client(world.admin).post(f"/api/v1/notifiers/{notifier.pk}/test/", format="json")
    assert response.status_code == 200 and response.json()["status"] == "sent" and response.json()["response_code"] == 200
    assert receiver.wait_for(1)[0]["json"]["kind"] == "test"
    receiver.status = 403
    response = world.client(world.admin).post(f"/api/v1/notifiers/{notifier.pk}/test/", format="json")
    assert response.json()["status"] == "failed" and "answered 403" in response.json()["error"]
    assert response.json()["attempt_log"][0]["response_code"] == 403
    # Notifiers are administrators' only: a cluster owner cannot even find it.
    assert world.client(world.owner).post(f"/api/v1/notifiers/{notifier.pk}/test/", format="json").status_code == 404


def test_secrets_are_encrypted_at_rest_never_returned_and_never_audited(world):
    admin = world.client(world.admin)
    response = admin.post("/api/v1/notifiers/", {"name": "pd", "kind": "pagerduty", "config": {"routing_key": "R0UTING-SECRET-KEY"}},
                          format="json")
    assert response.status_code == 201, response.content
    assert "R0UTING-SECRET-KEY" not in response.content.decode() and response.json()["secrets_set"] == ["routing_key"]
    pk = response.json()["id"]
    response = admin.post("/api/v1/notifiers/", {"name": "mail", "kind": "email", "config": {
        "recipients": ["a@example.com"], "host": "smtp.example.com", "username": "u", "password": "SMTP-PASSWORD-XYZ"}}, format="json")
    assert response.status_code == 201 and "SMTP-PASSWORD-XYZ" not in response.content.decode()
    assert response.json()["config"] == {"recipients": ["a@example.com"], "host": "smtp.example.com", "username": "u"}
    # A change that leaves the secret out keeps it; the secret still never shows.
    response = admin.patch(f"/api/v1/notifiers/{pk}/", {"config": {"url": "https://events.example.com/v2/enqueue"}}, format="json")
    assert response.status_code == 200 and response.json()["secrets_set"] == ["routing_key"]
    assert Notifier.objects.get(pk=pk).settings()["routing_key"] == "R0UTING-SECRET-KEY"
    for body in (admin.get(f"/api/v1/notifiers/{pk}/").content, admin.get("/api/v1/notifiers/").content):
        assert b"R0UTING-SECRET-KEY" not in body and b"SMTP-PASSWORD-XYZ" not in body
    with connection.cursor() as cursor:
        cursor.execute("SELECT config::text, secrets FROM monitoring_notifier")
        stored = " ".join(" ".join(row) for row in cursor.fetchall())
    assert "R0UTING-SECRET-KEY" not in stored and "SMTP-PASSWORD-XYZ" not in stored and "gAAAAA" in stored
    audit = " ".join(str((e.before, e.after, e.message)) for e in AuditEvent.objects.all())
    assert "R0UTING-SECRET-KEY" not in audit and "SMTP-PASSWORD-XYZ" not in audit and "routing_key" not in audit


@pytest.mark.parametrize("kind, config, problem", [
    ("webhook", {"url": "ftp://x"}, "url"),
    ("pagerduty", {}, "routing_key"),
    ("email", {"recipients": ["a@example.com"]}, "host"),
    ("email", {"recipients": ["a@example.com"], "host": "h", "port": "25"}, "port"),
    ("slack", {"url": "https://hooks.slack.com/x", "channel": "#ops"}, "channel"),
])
def test_bad_notifier_config_is_a_400_naming_it(world, kind, config, problem):
    response = world.client(world.admin).post("/api/v1/notifiers/", {"name": "n", "kind": kind, "config": config}, format="json")
    assert response.status_code == 400 and problem in response.content.decode(), response.content
