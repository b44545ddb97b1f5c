"""Sending one notification: the message for each kind of notifier, and the one call that sends it.

Each sender takes the notifier's settings (config and decrypted secrets) and a ``Message`` and
returns the HTTP status code (None for e-mail), or raises ``DeliveryError`` naming what failed.
"""

import hashlib
import hmac
import json
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import urlsplit

import requests
from django.conf import settings

from monitoring import outbound
from monitoring.models import PAGERDUTY_EVENTS_URL, NotifierKind

DEFAULT_TIMEOUT = 10
USER_AGENT = "Corral-Alerts/1"
SEVERITY_COLOURS = {"critical": "D93F0B", "warning": "FBCA04", "info": "0E8A16", "resolved": "2EA44F"}


class DeliveryError(Exception):
    def __init__(self, message, response_code=None):
        super().__init__(message)
        self.response_code = response_code


@dataclass
class AlertItem:
    """What a message tells of one alert."""

    id: int
    rule: str
    cluster: str
    target: str
    state: str  # firing or resolved
    severity: str
    message: str
    labels: dict
    value: float | None
    started: str
    resolved: str | None
    link: str
    fingerprint: str  # stable across notifications: PagerDuty's dedup key, Alertmanager's identity


@dataclass
class Message:
    kind: str  # firing, resolved or test
    title: str
    alerts: list = field(default_factory=list)
    group_key: str = ""

    def text(self):
        lines = [self.title, ""]
        for a in self.alerts:
            since = f" since {a.started}" if a.state == "firing" else f" (resolved {a.resolved})"
            value = f" value={a.value:g}" if a.value is not None else ""
            lines.append(f"[{a.state.upper()}] {a.severity} {a.cluster} {a.target}: {a.message}{value}{since}")
            if a.link:
                lines.append(f"  {a.link}")
        if self.kind == "test":
            lines.append("This is a test notification from Corral.")
        return "\n".join(lines)

    def as_json(self):
        return {
            "version": "1",
            "kind": self.kind,
            "title": self.title,
            "group_key": self.group_key,
            "alerts": [a.__dict__ for a in self.alerts],
        }


def _timeout(conf):
    return conf.get("timeout") or DEFAULT_TIMEOUT


def _http_post(url, **kwargs):
    """POST through a session obeying the notifiers' outbound policy (``monitoring.outbound``);
    a refused address raises DeliveryError naming the address and the rule."""
    with outbound.session() as session:
        try:
            return session.post(url, allow_redirects=False, **kwargs)
        except outbound.ConnectionNotAllowed as exc:
            raise DeliveryError(f"not sent: {exc}") from None
        except requests.RequestException as exc:
            refused = outbound.refused_by(exc)
            if refused is not None:
                raise DeliveryError(f"not sent: {refused}") from None
            raise


def _post(url, payload, conf, headers=None):
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
    try:
        response = _http_post(url, data=body, headers=headers, timeout=_timeout(conf))
    except requests.RequestException as exc:
        # The URL may carry a token: name the failure, not the URL.
        raise DeliveryError(f"could not reach the receiver: {type(exc).__name__}: {_without_url(exc, url)}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"the receiver answered {response.status_code}: {response.text[:200]}", response.status_code)
    return response.status_code


def _without_url(exc, url):
    """The error without the URL's path and query, which may carry a token (Slack, Teams)."""
    text, parts = str(exc), urlsplit(url)
    hidden = [url, f"{parts.path}?{parts.query}" if parts.query else "", parts.path if len(parts.path) > 1 else "", parts.query]
    for secret in sorted(filter(None, hidden), key=len, reverse=True):
        text = text.replace(secret, "<hidden>")
    return text[:300]


def sign(secret, timestamp, body):
    """The webhook signature: HMAC-SHA256 over ``<timestamp>.<body>`` with the notifier's secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def send_webhook(conf, message):
    payload = message.as_json()
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if conf.get("secret"):
        timestamp = str(int(time.time()))
        headers["X-Corral-Timestamp"] = timestamp
        headers["X-Corral-Signature"] = f"sha256={sign(conf['secret'], timestamp, body)}"
    try:
        response = _http_post(conf["url"], data=body, headers=headers, timeout=_timeout(conf))
    except requests.RequestException as exc:
        raise DeliveryError(f"could not reach the receiver: {type(exc).__name__}: {_without_url(exc, conf['url'])}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"the receiver answered {response.status_code}: {response.text[:200]}", response.status_code)
    return response.status_code


def send_slack(conf, message):
    """Slack incoming webhook: ``text`` (the fallback) and blocks."""
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}}]
    for a in message.alerts[:20]:
        text = f"*[{a.state.upper()}]* {a.severity} `{a.cluster}` {a.target}: {a.message}"
        if a.link:
            text += f" <{a.link}|open>"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
    return _post(conf["url"], {"text": message.text()[:3000], "blocks": blocks}, conf)


def send_teams(conf, message):
    """Microsoft Teams incoming webhook: a MessageCard."""
    worst = "resolved" if message.kind == "resolved" else max(
        (a.severity for a in message.alerts), key=["info", "warning", "critical"].index, default="info")
    card = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": message.title[:200],
        "themeColor": SEVERITY_COLOURS.get(worst, "0078D7"),
        "title": message.title[:200],
        "sections": [
            {
                "activityTitle": f"[{a.state.upper()}] {a.target}",
                "activitySubtitle": a.message[:500],
                "facts": [{"name": "Cluster", "value": a.cluster}, {"name": "Severity", "value": a.severity},
                          {"name": "Since", "value": a.started}],
                **({"potentialAction": [{"@type": "OpenUri", "name": "Open in Corral",
                                         "targets": [{"os": "default", "uri": a.link}]}]} if a.link else {}),
            }
            for a in message.alerts[:10]
        ] or [{"text": message.text()}],
    }
    return _post(conf["url"], card, conf)


PAGERDUTY_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


def send_pagerduty(conf, message):
    """PagerDuty Events API v2: one event per alert, its dedup key stable, so a resolve closes
    the incident its trigger opened."""
    url = conf.get("url") or PAGERDUTY_EVENTS_URL
    code = None
    alerts = message.alerts or [AlertItem(0, "test", "corral", "test", "firing", "info", message.title, {}, None, "", None, "",
                                          f"corral-test-{int(time.time())}")]
    for a in alerts:
        if a.state == "resolved":
            event = {"routing_key": conf["routing_key"], "event_action": "resolve", "dedup_key": a.fingerprint}
        else:
            event = {
                "routing_key": conf["routing_key"],
                "event_action": "trigger",
                "dedup_key": a.fingerprint,
                "payload": {
                    "summary": f"{a.rule}: {a.target} on {a.cluster} — {a.message}"[:1024],
                    "source": a.cluster,
                    "severity": PAGERDUTY_SEVERITY.get(a.severity, "warning"),
                    "timestamp": a.started or None,
                    "component": a.target,
                    "group": a.cluster,
                    "class": a.rule,
                    "custom_details": {"labels": a.labels, "value": a.value, "message": a.message},
                },
                "client": "Corral",
                **({"client_url": a.link, "links": [{"href": a.link, "text": "Open in Corral"}]} if a.link else {}),
            }
            if not event["payload"]["timestamp"]:
                del event["payload"]["timestamp"]
        code = _post(url, event, conf)
    return code


def send_alertmanager(conf, message):
    """Alertmanager's v2 API: POST /api/v2/alerts with labels and annotations; a resolved alert
    is posted with its endsAt, so Alertmanager's routing, grouping and silences apply."""
    items = []
    for a in message.alerts:
        item = {
            "labels": {"alertname": a.rule, "cluster": a.cluster, "target": a.target, "severity": a.severity,
                       **{k: str(v) for k, v in a.labels.items()}},
            "annotations": {"summary": a.message, **({"value": f"{a.value:g}"} if a.value is not None else {})},
            "startsAt": a.started,
            "generatorURL": a.link or "",
        }
        if a.state == "resolved" and a.resolved:
            item["endsAt"] = a.resolved
        items.append(item)
    if not items:  # a test: one alert that ends by itself in five minutes
        now = time.time()
        items = [{"labels": {"alertname": "CorralTestNotification", "severity": "info"}, "annotations": {"summary": message.title},
                  "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                  "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 300))}]
    base = conf["url"].rstrip("/")
    auth = (conf["username"], conf.get("password", "")) if conf.get("username") else None
    try:
        response = _http_post(f"{base}/api/v2/alerts", json=items, auth=auth, timeout=_timeout(conf),
                                 headers={"User-Agent": USER_AGENT})
    except requests.RequestException as exc:
        raise DeliveryError(f"could not reach Alertmanager: {type(exc).__name__}: {_without_url(exc, base)}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"Alertmanager answered {response.status_code}: {response.text[:200]}", response.status_code)
    return response.status_code


def send_email(conf, message):
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = conf.get("sender") or settings.DEFAULT_FROM_EMAIL
    mail["To"] = ", ".join(conf["recipients"])
    mail.set_content(message.text())
    port = conf.get("port") or (587 if conf.get("starttls", True) else 25)
    try:
        with outbound.SMTP(conf["host"], port, timeout=_timeout(conf)) as smtp:
            smtp.ehlo()
            if conf.get("starttls", True):
                context = ssl.create_default_context(cadata=conf["ca_cert"]) if conf.get("ca_cert") else ssl.create_default_context()
                smtp.starttls(context=context)
                smtp.ehlo()
            if conf.get("username"):
                smtp.login(conf["username"], conf.get("password", ""))
            refused = smtp.send_message(mail)
    except outbound.ConnectionNotAllowed as exc:
        raise DeliveryError(f"not sent: {exc}") from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"the SMTP server answered {exc.smtp_code}: {exc.smtp_error.decode(errors='replace')[:200]}", exc.smtp_code) from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"could not send the e-mail: {type(exc).__name__}: {exc}"[:300]) from None
    if refused:
        raise DeliveryError(f"the SMTP server refused: {', '.join(sorted(refused))}")
    return None


SENDERS = {
    NotifierKind.EMAIL: send_email,
    NotifierKind.WEBHOOK: send_webhook,
    NotifierKind.SLACK: send_slack,
    NotifierKind.TEAMS: send_teams,
    NotifierKind.PAGERDUTY: send_pagerduty,
    NotifierKind.ALERTMANAGER: send_alertmanager,
}


def send(notifier, message):
    """Send ``message`` through ``notifier``; returns the response code or raises DeliveryError."""
    return SENDERS[notifier.kind](notifier.settings(), message)
