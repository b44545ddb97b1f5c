"""Every error the API gives is JSON that names the problem; nothing becomes a 500 that need not."""

import logging

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from portal.states import InvalidTransition

log = logging.getLogger(__name__)


def _django_validation_detail(exc):
    if hasattr(exc, "message_dict"):
        return exc.message_dict
    return {"detail": exc.messages}


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        from django.conf import settings

        return Response(
            {"detail": f"request body too large (the limit is {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes)"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_detail(exc))
    elif isinstance(exc, InvalidTransition):
        exc = exceptions.ValidationError({"state": str(exc)})
    elif isinstance(exc, IntegrityError):
        log.warning("integrity error turned into 409: %s", exc)
        return Response({"detail": "conflicts with an existing object"}, status=status.HTTP_409_CONFLICT)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, list):
        # An error is always an object (as the schema says): a bare list of messages becomes its detail.
        response.data = {"detail": " ".join(str(message) for message in response.data)}
    return response


def not_found(request, exception=None):
    """``handler404``: a URL under /api/ that matches nothing answers in JSON like every API error."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
