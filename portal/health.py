"""/healthz and /readyz, answered before any other middleware.

  /healthz  the process is up and serving (a liveness probe: it asks no other service, so an
            outage of PostgreSQL or Redis never gets the web pods restarted)
  /readyz   ready for traffic: the database answers, Redis answers and every migration is
            applied; otherwise 503 with JSON naming what is not ready (a readiness probe)

They sit first in MIDDLEWARE so that a probe is answered whatever Host header it sends (a kubelet
sends the pod's IP, which ALLOWED_HOSTS rightly refuses) and over plain HTTP even when
PORTAL_SSL_REDIRECT is on; they say nothing about any user's data.
"""

import logging
import threading

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse

log = logging.getLogger(__name__)
PROBE_TIMEOUT_SECONDS = 2
_redis = {}
_redis_guard = threading.Lock()


def _no_store(response):
    response["Cache-Control"] = "no-store"
    return response


def healthz(request):
    return _no_store(JsonResponse({"status": "ok"}))


def _redis_client():
    """A client of its own, without the retries of the others: a probe wants a quick answer."""
    url = settings.REDIS_URL
    with _redis_guard:
        if url not in _redis:
            _redis[url] = redis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
                                               socket_timeout=PROBE_TIMEOUT_SECONDS)
        return _redis[url]


def check_database():
    connection = connections[DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis():
    _redis_client().ping()


def check_migrations():
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise NotReady(f"{len(names)} not applied: {shown}; run manage.py migrate")


class NotReady(Exception):
    pass


CHECKS = (
    ("database", "the database", check_database),
    ("redis", "Redis", check_redis),
    ("migrations", "migrations", check_migrations),
)


def readyz(request):
    checks, not_ready = {}, []
    database_up = True
    for key, name, check in CHECKS:
        if key == "migrations" and not database_up:
            checks[key] = "unknown: the database is not reachable"
            not_ready.append(name)
            continue
        try:
            check()
        except NotReady as exc:
            checks[key] = str(exc)
            not_ready.append(name)
        except Exception as exc:  # noqa: BLE001 - any failure to answer is "not ready", named
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            checks[key] = f"cannot reach {name}: {detail}"
            not_ready.append(name)
            if key == "database":
                database_up = False
                connections[DEFAULT_DB_ALIAS].close_if_unusable_or_obsolete()
        else:
            checks[key] = "ok"
    if not_ready:
        log.warning("/readyz: not ready: %s", "; ".join(checks[k] for k, _n, _c in CHECKS if checks[k] != "ok"))
        body = {"status": "not ready", "not_ready": not_ready, "checks": checks}
        return _no_store(JsonResponse(body, status=503))
    return _no_store(JsonResponse({"status": "ready", "checks": checks}))


PROBES = {"/healthz": healthz, "/readyz": readyz}


class HealthMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            return probe(request)
        return self.get_response(request)
