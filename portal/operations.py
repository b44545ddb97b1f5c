"""Long-running work as ``Operation`` rows: the task writes progress and log lines, the websocket
pushes them, the UI follows live.

Nothing is left hanging.  An operation is created only when its task can be queued: the broker is
checked first (BrokerUnavailable, a 503, and nothing is stored when it is down), and a send that
still fails after commit marks the operation failed with the reason.  While a task runs it holds
the owned lock ``operation:<id>`` (portal.locks); a worker that dies stops renewing it, and
``fail_lost()`` (a periodic task) marks such operations failed.  Each app says, with
``on_failure(kind, handler)``, how a failed operation of its kind leaves its object (a removal that
failed puts its cluster in ``error``, from where it can be removed again).
"""

import logging
import traceback
from datetime import timedelta

from celery.exceptions import Ignore
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError
from rest_framework.exceptions import APIException

from portal import locks
from portal.events import emit, group_name
from portal.models import Operation, OperationStatus

log = logging.getLogger(__name__)
MAX_LOG_LINES = 500
_failure_handlers = {}


class BrokerUnavailable(APIException):
    status_code = 503
    default_code = "broker_unavailable"


def on_failure(kind, handler):
    """Call ``handler(operation, reason)`` whenever an operation of ``kind`` fails, however it
    failed (its task raised, it could not be queued, its worker was lost)."""
    _failure_handlers[kind] = handler


def _payload(op):
    return {
        "id": op.pk, "kind": op.kind, "cluster": op.cluster_id, "target": op.target_repr, "status": op.status,
        "progress": op.progress, "error": op.error, "log": op.log[-1:] if op.log else [],
    }


def _topics(op):
    """The operation's page and its cluster's; who hears it there follows from who may view it."""
    topics = [group_name("operation", op.pk)]
    if op.cluster_id:
        topics.append(group_name("cluster", op.cluster_id))
    return topics


def _save(op, *fields):
    op.save(update_fields=[*fields, "modified"])
    emit("operation.updated", _payload(op), op, *_topics(op))


def _broker(app):
    return app.connection_for_write().as_uri(mask="")  # without the password, if any


def check_broker():
    """Raise BrokerUnavailable unless the Celery broker answers (retried for a second or two)."""
    from portal.celery import app

    if app.conf.task_always_eager:
        return
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=2, interval_start=0, interval_step=0.5, interval_max=1, timeout=settings.REDIS_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - whatever the transport raises, the broker is unusable
        raise BrokerUnavailable(f"the task queue (Celery broker {_broker(app)}) cannot be reached ({exc}); nothing was started, try again when it is back") from exc


def start(kind, task, *, cluster=None, target="", user=None, args=()):
    """Create an Operation and enqueue ``task(operation_id, *args)`` once the transaction commits.

    Raises BrokerUnavailable before anything is written when the broker is down.  If the send
    after commit still fails, the operation is marked failed with the reason (never left pending)
    and BrokerUnavailable is raised from the commit."""
    check_broker()
    op = Operation.objects.create(kind=kind, cluster=cluster, target_repr=target or str(cluster or ""), created_by=user)
    op_id = op.pk
    transaction.on_commit(lambda: _send(op_id, task, args))
    emit("operation.created", _payload(op), op, *_topics(op))
    return op


def _send(op_id, task, args):
    try:
        task.apply_async((op_id, *args))  # retried per CELERY_TASK_PUBLISH_RETRY_POLICY
    except OperationalError as exc:
        from portal.celery import app

        reason = f"could not be queued: the task queue (Celery broker {_broker(app)}) cannot be reached ({exc})"
        op = Operation.objects.filter(pk=op_id).first()
        if op is not None:
            fail(op, reason)
        raise BrokerUnavailable(f"the operation {reason}; try again when it is back") from exc


def fail(op, reason):
    """Mark an unfinished operation failed with ``reason`` and let its kind's handler react."""
    with transaction.atomic():
        op = Operation.objects.select_for_update().get(pk=op.pk)
        if op.is_finished:
            return op
        op.transition(OperationStatus.FAILED)
        op.finished = timezone.now()
        op.error = reason
        op.log = (list(op.log) + [{"time": op.finished.isoformat(), "message": f"failed: {reason}"}])[-MAX_LOG_LINES:]
        _save(op, "status", "error", "finished", "log")
    _after_failure(op, reason)
    return op


def _after_failure(op, reason):
    handler = _failure_handlers.get(op.kind)
    if handler is None:
        return
    try:
        handler(op, reason)
    except Exception:  # noqa: BLE001 - the operation is failed already; say why the cleanup was not
        log.exception("operation %s (%s): its failure handler raised", op.pk, op.kind)


def liveness_lock_name(op_id):
    return f"operation:{op_id}"


def fail_lost(grace=None, queue_timeout=None):
    """Fail operations nobody is working on: running ones whose worker stopped renewing their lock
    (killed, out of memory, its host gone) and pending ones no worker took within
    ``queue_timeout`` (their queued task was lost).  Returns the failed operations."""
    now = timezone.now()
    grace = timedelta(seconds=settings.OPERATION_LOST_GRACE_SECONDS if grace is None else grace)
    queue_timeout = timedelta(seconds=settings.OPERATION_QUEUE_TIMEOUT_SECONDS if queue_timeout is None else queue_timeout)
    failed = []
    for op in Operation.objects.filter(status=OperationStatus.RUNNING, modified__lt=now - grace):
        if not locks.is_held(liveness_lock_name(op.pk)):
            failed.append(fail(op, "the worker running it stopped (killed or lost) before it finished"))
    for op in Operation.objects.filter(status=OperationStatus.PENDING, created__lt=now - queue_timeout):
        minutes = int(queue_timeout.total_seconds() // 60)
        failed.append(fail(op, f"no worker started it within {minutes} minutes: its queued task was lost"))
    return failed


class Progress:
    """Used by a task: ``with Progress(op_id) as p: p.step(20, "starting etcd")``.

    Leaving the block normally marks the operation succeeded; an exception marks it failed with the
    message (the traceback goes to the worker log, not to the user)."""

    def __init__(self, operation_id):
        self.op = Operation.objects.select_related("cluster").get(pk=operation_id)
        # Held (and renewed) while the task runs: fail_lost() tells a live run from a dead one.
        self.alive = locks.OwnedLock(liveness_lock_name(operation_id))

    def __enter__(self):
        if self.op.is_finished:
            # Cancelled, or a redelivered task whose operation was already failed as lost.
            raise Cancelled()
        if not self.alive.acquire(wait=locks.TTL_SECONDS + 10):
            raise Cancelled()  # the same task is running elsewhere (delivered twice)
        self.op.refresh_from_db()
        if self.op.is_finished:  # failed as lost while this redelivered run waited for the lock
            self.alive.release()
            raise Cancelled()
        again = self.op.status == OperationStatus.RUNNING
        self.op.transition(OperationStatus.RUNNING)
        self.op.started = self.op.started if again else timezone.now()
        self.op.log = list(self.op.log) + [self._line("started again: the worker that ran it was lost" if again else "started")]
        _save(self.op, "status", "started", "log")
        return self

    @staticmethod
    def _line(message):
        return {"time": timezone.now().isoformat(), "message": message}

    def step(self, percent, message):
        self.op.refresh_from_db(fields=["status"])
        if self.op.status == OperationStatus.CANCELLED:
            raise Cancelled()
        self.op.progress = max(self.op.progress, min(100, int(percent)))
        self.op.log = (list(self.op.log) + [self._line(message)])[-MAX_LOG_LINES:]
        _save(self.op, "progress", "log")

    def __exit__(self, exc_type, exc, tb):
        self.alive.release()
        if isinstance(exc, Cancelled):
            return True
        self.op.refresh_from_db(fields=["status"])
        if self.op.is_finished:
            return False  # failed meanwhile as lost (the run outlived its lock): that record stands
        self.op.finished = timezone.now()
        if exc is None:
            self.op.transition(OperationStatus.SUCCEEDED)
            self.op.progress = 100
            self.op.log = list(self.op.log) + [self._line("done")]
            _save(self.op, "status", "progress", "finished", "log")
            return False
        log.error("operation %s (%s) failed:\n%s", self.op.pk, self.op.kind, "".join(traceback.format_exception(exc)))
        self.op.transition(OperationStatus.FAILED)
        self.op.error = str(exc) or exc.__class__.__name__
        self.op.log = list(self.op.log) + [self._line(f"failed: {self.op.error}")]
        _save(self.op, "status", "error", "finished", "log")
        _after_failure(self.op, self.op.error)
        return False


class Cancelled(Ignore):
    """The operation is not (or no longer) to be run: the task ends quietly."""


def cancel(op, by=None):
    """Cancel an operation that has not finished (InvalidTransition otherwise)."""
    op.transition(OperationStatus.CANCELLED)
    op.finished = timezone.now()
    op.log = list(op.log) + [{"time": op.finished.isoformat(), "message": f"cancelled by {by or 'system'}"}]
    _save(op, "status", "finished", "log")
    return op
