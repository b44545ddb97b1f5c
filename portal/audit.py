"""The audit trail: every change made through the admin, the API or the portal is written as an
``AuditEvent`` with who, what, before and after, and the request id.

A request runs inside ``audit_context``; model signals write events only inside one, so the
inventory that sync tasks write (thousands of rows) never floods the trail.
"""

import contextvars
import datetime
import decimal
import uuid
from contextlib import contextmanager

from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

_context = contextvars.ContextVar("corral_audit", default=None)


class AuditContext:
    def __init__(self, user=None, source="", request_id=None):
        self.user = user if (user is not None and user.is_authenticated) else None
        self.source = source
        self.request_id = request_id or uuid.uuid4()


@contextmanager
def audit_context(user=None, source="", request_id=None):
    token = _context.set(AuditContext(user, source, request_id))
    try:
        yield _context.get()
    finally:
        _context.reset(token)


def current():
    return _context.get()


class AuditMiddleware:
    """Runs each request inside an audit context and returns its id in ``X-Request-ID``."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        source = "api" if path.startswith("/api/") else "admin" if path.startswith("/admin/") else "portal"
        request_id = uuid.uuid4()
        request.id = request_id
        # request.user may be replaced by DRF token auth later; AuditContext reads it lazily below.
        with audit_context(None, source, request_id) as ctx:
            ctx.request = request
            response = self.get_response(request)
        response["X-Request-ID"] = str(request_id)
        return response


def _context_user(ctx):
    if ctx.user is not None:
        return ctx.user
    request = getattr(ctx, "request", None)
    user = getattr(request, "user", None) if request is not None else None
    if user is not None and user.is_authenticated:
        return user
    return None


def _jsonable(value):
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return value


def snapshot(instance):
    """The audited fields of ``instance`` as plain JSON (secrets left out)."""
    data = {}
    for field in instance._meta.concrete_fields:
        if field.name in instance.audit_exclude or field.name in ("created", "modified"):
            continue
        value = getattr(instance, field.attname)
        data[field.attname if isinstance(field, models.ForeignKey) else field.name] = _jsonable(value)
    return data


def _changed_only(before, after):
    keys = {key for key in after if before.get(key) != after.get(key)}
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def record(action, instance=None, *, object_type=None, object_id="", object_repr="", before=None, after=None, message=""):
    """Write one audit event in the current context (or as the system when there is none)."""
    from portal.models import AuditEvent

    ctx = current()
    user = _context_user(ctx) if ctx else None
    if instance is not None:
        object_type = instance._meta.label_lower
        object_id = str(instance.pk)
        object_repr = str(instance)[:200]
    return AuditEvent.objects.create(
        user=user,
        username=user.get_username() if user else "",
        request_id=ctx.request_id if ctx else None,
        source=ctx.source if ctx else "task",
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        before=before,
        after=after,
        message=message[:300],
    )


def _audited(sender):
    return getattr(sender, "audited", False) and current() is not None


@receiver(pre_save)
def _remember_before(sender, instance, raw=False, **kwargs):
    if raw or not _audited(sender):
        return
    instance._audit_before = None
    if instance.pk is not None:
        old = sender._base_manager.filter(pk=instance.pk).first()
        instance._audit_before = snapshot(old) if old is not None else None
    # Whoever creates a row through a request is its creator.
    if instance.pk is None and getattr(instance, "created_by_id", "n/a") is None:
        user = _context_user(current())
        if user is not None:
            instance.created_by = user


@receiver(post_save)
def _record_save(sender, instance, created, raw=False, **kwargs):
    if raw or not _audited(sender):
        return
    after = snapshot(instance)
    before = getattr(instance, "_audit_before", None)
    if created or before is None:
        record("create", instance, after=after)
        return
    before, after = _changed_only(before, after)
    if after:
        record("update", instance, before=before, after=after)


@receiver(post_delete)
def _record_delete(sender, instance, **kwargs):
    if not _audited(sender):
        return
    record("delete", instance, before=snapshot(instance))
