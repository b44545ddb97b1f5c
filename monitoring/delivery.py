"""Grouping alerts into notifications, as Alertmanager does, and delivering them with retries.

A group is one rule on one cluster.  When an alert of a group starts firing or resolves, the group
is due: after ``group_wait`` when it has not notified yet, else ``group_interval`` after its last
notification.  When due, one message per notifier tells every firing alert and the alerts resolved
since the last message; a group still firing is told again after ``repeat_interval``.  Silenced
alerts are left out; acknowledged ones are not repeated.

Each message is a ``Notification`` row delivered by a worker; every attempt is a
``DeliveryAttempt`` row.  A failed attempt is retried with exponential back-off up to
``PORTAL_NOTIFY_MAX_ATTEMPTS``; after the last one the notification is failed and the notifier
shows the error.  A failing notifier never holds back the others or the next alert.
"""

import hashlib
import logging
import time
from collections import defaultdict
from datetime import UTC, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from monitoring.models import (
    OPEN_STATES,
    Alert,
    AlertGroup,
    AlertState,
    DeliveryAttempt,
    DeliveryStatus,
    Notification,
    NotificationKind,
    Notifier,
)
from monitoring.notifiers import AlertItem, DeliveryError, Message, send

log = logging.getLogger(__name__)


def _later(task, args, countdown):
    """Queue ``task`` after the transaction commits.  Under eager Celery (tests) a delayed task
    would run at once, so only immediate ones run there; the periodic pass does the rest."""
    from portal.celery import app

    if countdown > 0 and app.conf.task_always_eager:
        return

    def queue():
        try:
            task.apply_async(args, countdown=max(0.0, countdown))
        except Exception as exc:  # the broker is down: the periodic pass picks it up
            log.warning("could not queue %s%s (%s); the periodic pass will", task.name, args, exc)

    transaction.on_commit(queue)


def fingerprint(alert):
    """Stable for one rule, cluster and target: PagerDuty's dedup key."""
    return "corral-" + hashlib.sha256(f"{alert.rule_id}/{alert.cluster_id}/{alert.target}".encode()).hexdigest()[:32]


def alert_link(alert):
    return f"{settings.PUBLIC_URL.rstrip('/')}/alerts/?cluster={alert.cluster_id}&state={alert.state}"


def _iso(value):
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def alert_item(alert):
    return AlertItem(
        id=alert.pk, rule=alert.rule.name, cluster=alert.cluster.name, target=alert.target,
        state="resolved" if alert.state == AlertState.RESOLVED else "firing", severity=alert.severity,
        message=alert.message, labels=alert.labels or {}, value=alert.value, started=_iso(alert.started),
        resolved=_iso(alert.resolved), link=alert_link(alert), fingerprint=fingerprint(alert),
    )


# --- grouping --------------------------------------------------------------------------------


def group_changed(rule, cluster_id, now=None):
    """An alert of (rule, cluster) started firing or resolved: make the group due."""
    now = now or timezone.now()
    group, _ = AlertGroup.objects.get_or_create(rule=rule, cluster_id=cluster_id)
    if group.last_flush is None:
        due = now + timedelta(seconds=rule.group_wait_seconds)
    else:
        due = max(now, group.last_flush + timedelta(seconds=rule.group_interval_seconds))
    if group.next_flush is None or due < group.next_flush:
        AlertGroup.objects.filter(pk=group.pk).update(next_flush=due)
    from monitoring import tasks

    _later(tasks.flush_group, (group.pk,), (due - now).total_seconds())


def groups_changed(pairs, now=None):
    """``group_changed`` for many (rule, cluster id) at once: the groups read and made in two
    statements, made due in one, their flushes queued over one broker connection."""
    if not pairs:
        return
    now = now or timezone.now()
    rules = {rule.pk: rule for rule, _ in pairs}
    wanted = {(rule.pk, cluster_id) for rule, cluster_id in pairs}
    existing = {(g.rule_id, g.cluster_id): g for g in AlertGroup.objects.filter(rule_id__in=rules, cluster_id__in={c for _, c in wanted})
                if (g.rule_id, g.cluster_id) in wanted}
    missing = [AlertGroup(rule_id=r, cluster_id=c) for r, c in wanted - set(existing)]
    AlertGroup.objects.bulk_create(missing, ignore_conflicts=True, batch_size=2000)
    if missing:
        existing = {(g.rule_id, g.cluster_id): g for g in AlertGroup.objects.filter(rule_id__in=rules, cluster_id__in={c for _, c in wanted})
                    if (g.rule_id, g.cluster_id) in wanted}
    sooner, queue = [], []
    for (rule_id, _), group in existing.items():
        rule = rules[rule_id]
        if group.last_flush is None:
            due = now + timedelta(seconds=rule.group_wait_seconds)
        else:
            due = max(now, group.last_flush + timedelta(seconds=rule.group_interval_seconds))
        if group.next_flush is None or due < group.next_flush:
            group.next_flush = due
            sooner.append(group)
        queue.append((group.pk, (due - now).total_seconds()))
    AlertGroup.objects.bulk_update(sooner, ["next_flush"], batch_size=2000)
    from monitoring import tasks
    from portal.celery import app

    # One flush task per moment (groups due together go together), not one per group.
    moments = defaultdict(list)
    for pk, countdown in queue:
        if not (countdown > 0 and app.conf.task_always_eager):
            moments[round(max(0.0, countdown), 1)].append(pk)

    def send():
        try:
            with app.producer_or_acquire() as producer:
                for countdown, pks in moments.items():
                    tasks.flush_groups.apply_async((pks,), countdown=countdown, producer=producer)
        except Exception as exc:  # the broker is down: the periodic pass picks them up
            log.warning("could not queue %d group flushes (%s); the periodic pass will", len(queue), exc)

    if moments:
        transaction.on_commit(send)


def flush(group_id, now=None):
    """Send the group's notification if it is due.  Returns the notifications made."""
    made = []
    with transaction.atomic():
        group = AlertGroup.objects.select_for_update().select_related("rule", "cluster").filter(pk=group_id).first()
        now = now or timezone.now()
        if group is None or group.next_flush is None or group.next_flush > now:
            return made
        rule = group.rule
        alerts = list(
            Alert.objects.filter(rule=rule, cluster_id=group.cluster_id)
            .filter(state=AlertState.FIRING) | Alert.objects.filter(rule=rule, cluster_id=group.cluster_id, state=AlertState.RESOLVED,
                                                                    notified_state=AlertState.FIRING)
        )
        for alert in alerts:
            alert.rule, alert.cluster = rule, group.cluster
        firing = [a for a in alerts if a.state == AlertState.FIRING and not a.is_silenced(now)]
        resolved = [a for a in alerts if a.state == AlertState.RESOLVED and not a.is_silenced(now)]
        new = [a for a in firing if a.notified_state != AlertState.FIRING]
        repeat = [a for a in firing if a.acknowledged is None]
        repeat_due = bool(repeat) and group.last_flush is not None and now - group.last_flush >= timedelta(seconds=rule.repeat_interval_seconds)
        tell_resolved = resolved if rule.send_resolved else []
        if new or tell_resolved or repeat_due:
            made = _notify(rule, group.cluster, firing, tell_resolved, now)
            Alert.objects.filter(pk__in=[a.pk for a in firing]).update(notified_state=AlertState.FIRING, last_notified=now)
        # Resolved alerts are told once (or never, without send_resolved).
        Alert.objects.filter(pk__in=[a.pk for a in resolved]).update(notified_state=AlertState.RESOLVED, last_notified=now)
        if firing:
            group.last_flush = now if (new or tell_resolved or repeat_due or group.last_flush is None) else group.last_flush
            group.next_flush = group.last_flush + timedelta(seconds=rule.repeat_interval_seconds)
        else:
            # Nothing firing: the group ends; the next alert waits group_wait again.
            group.last_flush, group.next_flush = None, None
        group.save(update_fields=["last_flush", "next_flush"])
    return made


def _notify(rule, cluster, firing, resolved, now):
    kind = NotificationKind.FIRING if firing else NotificationKind.RESOLVED
    items = [alert_item(a) for a in firing + resolved]
    if firing:
        title = f"[FIRING:{len(firing)}] {rule.name} on {cluster.name}"
        if resolved:
            title += f" ({len(resolved)} resolved)"
    else:
        title = f"[RESOLVED] {rule.name} on {cluster.name}"
    message = Message(kind=kind, title=title, alerts=items, group_key=f"rule-{rule.pk}/cluster-{cluster.pk}")
    made = []
    for notifier in rule.notifiers.filter(enabled=True):
        notification = Notification.objects.create(
            notifier=notifier, rule=rule, cluster=cluster, kind=kind, subject=title[:300], payload=_payload(message),
        )
        notification.alerts.set([a.pk for a in firing + resolved])
        made.append(notification)
        from monitoring import tasks

        _later(tasks.deliver, (notification.pk,), 0)
    return made


def _payload(message):
    return {"kind": message.kind, "title": message.title, "group_key": message.group_key, "alerts": [a.__dict__ for a in message.alerts]}


def _message(payload):
    return Message(kind=payload["kind"], title=payload["title"], group_key=payload.get("group_key", ""),
                   alerts=[AlertItem(**a) for a in payload.get("alerts", [])])


# --- delivery ----------------------------------------------------------------------------------


def backoff(attempts):
    """Seconds before the next attempt after ``attempts`` failed ones: base, 2x, 4x..., capped."""
    return min(settings.NOTIFY_RETRY_BASE_SECONDS * 2 ** (attempts - 1), settings.NOTIFY_RETRY_MAX_SECONDS)


def attempt(notification_id, retry=True):
    """Make one delivery attempt of the notification; record it; schedule the next on failure.
    Returns the notification afterwards."""
    with transaction.atomic():
        notification = Notification.objects.select_for_update().select_related("notifier").filter(pk=notification_id).first()
        if notification is None or notification.status in (DeliveryStatus.SENT, DeliveryStatus.FAILED):
            return notification
        # The attempt is made outside the row lock's transaction: it may take the timeout.
        number = notification.attempts + 1
        Notification.objects.filter(pk=notification.pk).update(attempts=number)
    notifier, started = notification.notifier, time.monotonic()
    code, error = None, ""
    try:
        code = send(notifier, _message(notification.payload))
    except DeliveryError as exc:
        code, error = exc.response_code, str(exc)
    except Exception as exc:  # a bug or an unexpected library error must still be recorded
        log.exception("notification %s: sending failed", notification_id)
        error = f"{type(exc).__name__}: {exc}"[:500]
    duration = int((time.monotonic() - started) * 1000)
    now = timezone.now()
    with transaction.atomic():
        DeliveryAttempt.objects.create(notification_id=notification.pk, number=number, at=now, ok=not error,
                                       response_code=code, error=error, duration_ms=duration)
        fields = {"attempts": number, "response_code": code, "error": error}
        if not error:
            fields.update(status=DeliveryStatus.SENT, sent=now, next_attempt=None)
            Notifier.objects.filter(pk=notifier.pk).update(last_sent=now)
        elif retry and number < settings.NOTIFY_MAX_ATTEMPTS:
            delay = backoff(number)
            fields.update(status=DeliveryStatus.RETRYING, next_attempt=now + timedelta(seconds=delay))
            from monitoring import tasks

            _later(tasks.deliver, (notification.pk,), delay)
        else:
            fields.update(status=DeliveryStatus.FAILED, next_attempt=None)
            Notifier.objects.filter(pk=notifier.pk).update(last_error=f"{notification.subject}: {error}"[:1000], last_error_at=now)
        Notification.objects.filter(pk=notification.pk).update(**fields)
    if error:
        log.warning("notification %s to %s: attempt %s failed: %s", notification.pk, notifier.name, number, error)
    notification.refresh_from_db()
    return notification


def send_test(notifier, user=None):
    """A test notification, sent once now (no retries), recorded like any other."""
    title = f"Test notification from Corral to {notifier.name}"
    message = Message(kind=NotificationKind.TEST, title=title)
    notification = Notification.objects.create(notifier=notifier, kind=NotificationKind.TEST, subject=title, payload=_payload(message))
    return attempt(notification.pk, retry=False)


def due_work(now=None):
    """The periodic safety net: flush due groups and redeliver notifications whose queued retry
    was lost.  Returns (groups flushed, notifications retried)."""
    from monitoring import tasks

    now = now or timezone.now()
    groups = list(AlertGroup.objects.filter(next_flush__lte=now).values_list("pk", flat=True))
    for pk in groups:
        flush(pk, now)
    stale = now - timedelta(seconds=60)
    lost = list(Notification.objects.filter(status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING])
                .filter(created__lt=stale).exclude(next_attempt__gt=stale).values_list("pk", flat=True))
    for pk in lost:
        _later(tasks.deliver, (pk,), 0)
    return len(groups), len(lost)


__all__ = ["OPEN_STATES", "attempt", "flush", "group_changed", "send_test", "due_work"]
