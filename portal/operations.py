"""Long-running work as ``Operation`` rows: the task writes progress and log lines, the websocket
pushes them, the UI follows live."""

import logging
import traceback

from django.db import transaction
from django.utils import timezone

from portal.events import emit, group_name
from portal.models import Operation, OperationStatus

log = logging.getLogger(__name__)
MAX_LOG_LINES = 500


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


def start(kind, task, *, cluster=None, target="", user=None, args=()):
    """Create an Operation and enqueue ``task(operation_id, *args)`` once the transaction commits."""
    op = Operation.objects.create(kind=kind, cluster=cluster, target_repr=target or str(cluster or ""), created_by=user)
    op_id = op.pk
    transaction.on_commit(lambda: task.delay(op_id, *args))
    emit("operation.created", _payload(op), op, *_topics(op))
    return op


class Progress:
    """Used by a task: ``with Progress(op_id) as p: p.step(20, "starting etcd")``.

    Leaving the block normally marks the operation succeeded; an exception marks it failed with the
    message (the traceback goes to the worker log, not to the user)."""

    def __init__(self, operation_id):
        self.op = Operation.objects.select_related("cluster").get(pk=operation_id)

    def __enter__(self):
        if self.op.status == OperationStatus.CANCELLED:
            raise Cancelled()
        self.op.transition(OperationStatus.RUNNING)
        self.op.started = timezone.now()
        self.op.log = list(self.op.log) + [self._line("started")]
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
        if isinstance(exc, Cancelled):
            return True
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
        return False


class Cancelled(Exception):
    pass


def cancel(op, by=None):
    """Cancel an operation that has not finished (InvalidTransition otherwise)."""
    op.transition(OperationStatus.CANCELLED)
    op.finished = timezone.now()
    op.log = list(op.log) + [{"time": op.finished.isoformat(), "message": f"cancelled by {by or 'system'}"}]
    _save(op, "status", "finished", "log")
    return op
