from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from portal import operations
from portal.models import Operation, OperationStatus


@shared_task(ignore_result=True)
def purge_operations():
    """Forget finished operations older than PORTAL_OPERATION_RETENTION_DAYS."""
    cutoff = timezone.now() - timedelta(days=settings.OPERATION_RETENTION_DAYS)
    done = [OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.CANCELLED]
    deleted, _ = Operation.objects.filter(status__in=done, finished__lt=cutoff).delete()
    return deleted


@shared_task(ignore_result=True)
def fail_lost_operations():
    """Operations whose worker died (or whose queued task was lost) end failed, with the reason."""
    return len(operations.fail_lost())
