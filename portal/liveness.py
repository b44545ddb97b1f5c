"""Liveness of the processes that serve no HTTP: the Celery worker, Celery beat and the watcher.

Each one touches ``<PORTAL_LIVENESS_DIR>/<component>`` from inside its own main loop (the worker from
a timer on its event loop, beat on every scheduler tick, the watcher on every turn of its loop), so
a process that hangs stops touching it.  ``manage.py alive --component worker|beat|watcher`` exits
0 while the file is fresh and 1 (saying why) when it is missing or stale: the exec probe of the
Helm chart and the healthcheck of docker-compose.yml.

Liveness is "the loop turns", not "the services answer": a worker whose Redis is down keeps
touching its file while it reconnects, so an outage of Redis or PostgreSQL never restarts it.
"""

import os
import time
from pathlib import Path

from django.conf import settings

COMPONENTS = ("worker", "beat", "watcher")
INTERVAL_SECONDS = 10  # how often the worker's timer touches its file (beat and the watcher: every tick, ≤ 5 s)
STALE_SECONDS = 60  # older than this: not alive


def path(component):
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; one of {', '.join(COMPONENTS)}")
    return Path(settings.LIVENESS_DIR) / component


def touch(component):
    """Say ``component`` is alive now.  Never raises: a full or read-only disk must not stop the loop
    (the probe then sees a stale file and says so)."""
    try:
        target = path(component)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
        os.utime(target)
    except OSError:
        pass


def clear(component):
    try:
        path(component).unlink()
    except OSError:
        pass


def check(component, max_age=STALE_SECONDS):
    """(alive, message)."""
    target = path(component)
    try:
        age = time.time() - target.stat().st_mtime
    except FileNotFoundError:
        return False, f"{component}: no heartbeat yet ({target} does not exist)"
    except OSError as exc:
        return False, f"{component}: cannot read {target} ({exc.strerror})"
    if age > max_age:
        return False, f"{component}: last heartbeat {age:.0f}s ago (more than {max_age:.0f}s; {target})"
    return True, f"{component}: alive (heartbeat {age:.0f}s ago)"
