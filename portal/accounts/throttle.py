"""Failed-login throttling, per user name and per client address, counted in the shared cache.

After PORTAL_LOGIN_MAX_FAILURES failures within PORTAL_LOGIN_LOCKOUT_SECONDS, further attempts
for that name (or from that address) are refused for PORTAL_LOGIN_LOCKOUT_SECONDS, without
asking any backend: a locked name cannot be used to probe passwords or to hammer the directory.
"""

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache


def _key(kind, value, what):
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"login-{what}:{kind}:{digest}"


def _subjects(username, address):
    subjects = [("user", (username or "").strip().lower())]
    if address:
        subjects.append(("addr", address))
    return subjects


def client_address(request):
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


def locked_for(username, address):
    """Seconds until the name or address may try again; 0 when not locked."""
    now = time.time()
    waits = [cache.get(_key(kind, value, "lock")) for kind, value in _subjects(username, address)]
    return max([math.ceil(until - now) for until in waits if until and until > now], default=0)


def record_failure(username, address):
    window = settings.PORTAL_LOGIN_LOCKOUT_SECONDS
    for kind, value in _subjects(username, address):
        key = _key(kind, value, "failures")
        cache.add(key, 0, timeout=window)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)
            count = 1
        if count >= settings.PORTAL_LOGIN_MAX_FAILURES:
            cache.set(_key(kind, value, "lock"), time.time() + window, timeout=window)
            cache.delete(key)


def record_success(username, address):
    """A good login clears the name's count (not the address's: one good account must not
    reset an address that is guessing at others)."""
    cache.delete(_key("user", (username or "").strip().lower(), "failures"))


def message(seconds):
    minutes = max(1, math.ceil(seconds / 60))
    return f"too many failed logins; try again in {minutes} minute{'s' if minutes != 1 else ''}"
