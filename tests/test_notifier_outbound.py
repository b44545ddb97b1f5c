"""The notifiers' outbound policy (PORTAL_NOTIFIER_ALLOWED_NETWORKS / PORTAL_NOTIFIER_DENIED_NETWORKS):
a URL or SMTP host typed in by a tenant must not reach Corral's own host or the cloud metadata
service.  Refused on save (400 naming the address and the rule) and at send time (the delivery
error names them; the receiver gets nothing)."""

import pytest

from monitoring import delivery
from monitoring.models import Notifier
from portal.envconfig import env_networks
from tests.receivers import HTTPReceiver, SMTPReceiver

DEFAULT_DENIED = env_networks("UNSET-FOR-THE-DEFAULT", "127.0.0.0/8,::1/128,0.0.0.0/8,169.254.0.0/16,fe80::/10,fd00:ec2::254/128")


@pytest.fixture
def receiver():
    r = HTTPReceiver()
    yield r
    r.close()


def test_the_default_refuses_loopback_and_metadata_on_save(world, settings, receiver):
    from django.conf import settings as live

    assert live.NOTIFIER_ALLOWED_NETWORKS == ["0.0.0.0/0", "::/0"]
    settings.NOTIFIER_DENIED_NETWORKS = DEFAULT_DENIED  # what an unset PORTAL_NOTIFIER_DENIED_NETWORKS gives (conftest opens loopback)
    admin = world.client(world.admin)
    for kind, config, refused in [
        ("webhook", {"url": f"{receiver.url}/hook"}, "connecting to 127.0.0.1 is not allowed: it is in 127.0.0.0/8"),
        ("slack", {"url": "http://169.254.169.254/latest/meta-data/"}, "169.254.169.254 is not allowed: it is in 169.254.0.0/16"),
        ("alertmanager", {"url": "http://localhost:9093"}, "localhost ("),
        ("teams", {"url": "http://[::1]:8080/x"}, "::1 is not allowed: it is in ::1/128"),
        ("pagerduty", {"routing_key": "k", "url": "http://0.0.0.0:80/v2/enqueue"}, "0.0.0.0 is not allowed"),
        ("email", {"recipients": ["a@example.com"], "host": "127.0.0.1", "port": 2525}, "127.0.0.1 is not allowed"),
    ]:
        response = admin.post("/api/v1/notifiers/", {"name": f"n-{kind}", "kind": kind, "config": config}, format="json")
        assert response.status_code == 400, (kind, response.content)
        text = " ".join(response.json()["config"])
        assert refused in text and "PORTAL_NOTIFIER_DENIED_NETWORKS" in text, text
    assert not Notifier.objects.exists() and receiver.requests == []
    # A public address is fine (a literal: no DNS needed here).
    response = admin.post("/api/v1/notifiers/", {"name": "public", "kind": "webhook", "config": {"url": "https://93.184.215.14/hook"}},
                          format="json")
    assert response.status_code == 201, response.content
    # An allow list: only what is in it.
    settings.NOTIFIER_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    response = admin.patch(f"/api/v1/notifiers/{response.json()['id']}/", {"config": {"url": "https://93.184.215.14/other"}},
                           format="json")
    assert response.status_code == 400 and "is not in PORTAL_NOTIFIER_ALLOWED_NETWORKS (10.0.0.0/8)" in str(response.json())


def test_a_delivery_to_a_refused_address_is_not_sent_and_says_why(world, settings, receiver):
    smtp = SMTPReceiver()
    try:
        hook = Notifier.objects.create(name="hook", kind="webhook", config={"url": f"{receiver.url}/hook", "secret": "s"})
        am = Notifier.objects.create(name="am", kind="alertmanager", config={"url": receiver.url})
        mail = Notifier.objects.create(name="mail", kind="email", config={"recipients": ["a@example.com"], "host": "127.0.0.1",
                                                                           "port": smtp.port, "starttls": False})
        assert delivery.send_test(hook).status == "sent"  # allowed (the tests open loopback)
        # The operator closes loopback after they were saved (or a name now resolves there): refused when connecting.
        settings.NOTIFIER_DENIED_NETWORKS = DEFAULT_DENIED
        for notifier in (hook, am, mail):
            notification = delivery.send_test(notifier)
            assert notification.status == "failed", notification.error
            assert notification.error.startswith("not sent: connecting to 127.0.0.1 is not allowed: it is in 127.0.0.0/8 "
                                                 "(PORTAL_NOTIFIER_DENIED_NETWORKS)"), notification.error
            notifier.refresh_from_db()
            assert "PORTAL_NOTIFIER_DENIED_NETWORKS" in notifier.last_error
        # A name is checked on the address it resolves to, when connecting.
        named = Notifier.objects.create(name="named", kind="slack", config={"url": f"http://localhost:{receiver.port}/hook"})
        notification = delivery.send_test(named)
        assert notification.status == "failed" and "connecting to localhost (" in notification.error and "is not allowed" in notification.error, \
            notification.error
        assert len(receiver.requests) == 1 and smtp.messages == []
    finally:
        smtp.close()
