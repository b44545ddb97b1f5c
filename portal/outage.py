"""What a request gets while the database or Redis is down: a 503 that names the service and says to
try again, as JSON under /api/ and as a page elsewhere, never a 500 with a stack trace.  Service
comes back by itself: Django opens a new database connection on the next request (health checks
replace a broken kept one) and the Redis clients reconnect (portal.settings)."""

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5

OUTAGES = (
    ((OperationalError, InterfaceError), "the database"),
    ((RedisConnectionError, RedisTimeoutError), "Redis"),
)


def unavailable_service(exc):
    """Which service ``exc`` (or an exception it came from) says is unreachable, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for types, service in OUTAGES:
            if isinstance(exc, types):
                return service
        exc = exc.__cause__ or exc.__context__
    return None


def wants_json(request):
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def unavailable(request, service):
    message = f"Corral cannot reach {service} right now; try again in a few seconds."
    if wants_json(request):
        response = JsonResponse({"detail": message}, status=503)
    else:
        # Rendered without the request: context processors would ask the database for the user.
        page = loader.get_template("503.html").render({"message": message, "retry_after": RETRY_AFTER_SECONDS})
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def server_error(request):
    """``handler500``: an unreachable database or Redis is a 503 naming it; anything else the usual 500."""
    service = unavailable_service(sys.exc_info()[1])
    if service:
        log.warning("%s %s answered 503: %s is unreachable", request.method, request.path, service)
        return unavailable(request, service)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error; it has been logged."}, status=500)
    return defaults.server_error(request)
