"""Failed-login throttle: django-axes with its database handler, keyed on the (user name, client
address) pair, with the attempt counted before the password is checked.

- State lives in PostgreSQL (axes' AccessAttempt), not in Redis: a Redis outage changes nothing.
- One row per (name, address).  Before any backend sees the password, `LoginThrottle.is_locked`
  locks that row (SELECT ... FOR UPDATE) and either takes one of the PORTAL_LOGIN_MAX_FAILURES
  attempts or refuses as locked.  Axes alone checks the count first and adds the failure after
  the backend answered, so concurrent guesses all get through; here they cannot.
- A good login deletes the pair's row (AXES_RESET_ON_SUCCESS); a login the directory could not
  answer ("directory unavailable") gives its attempt back.
- Locking the pair, not the name or the address, means nobody can lock someone else out: not
  from another address, and not by guessing other names from the same address (everyone behind
  one NAT or proxy).
- The client address is REMOTE_ADDR, or behind PORTAL_TRUSTED_PROXIES the first address in
  X-Forwarded-For, read from the right, that is not a trusted proxy.
"""

import functools
import ipaddress
import logging
import math
from datetime import timedelta

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.db import router, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

logger = logging.getLogger("portal.accounts")

UNKNOWN_ADDRESS = "0.0.0.0"  # a request without a usable peer address (e.g. test clients)


# --- Who is asking ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _networks(proxies):
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _address(text):
    try:  # no IPv6 zone ("%eth0"): PostgreSQL's inet does not take it
        address = ipaddress.ip_address(text.strip().strip("[]").split("%")[0])
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def trusted_proxy(address, proxies=None):
    networks = _networks(tuple(settings.PORTAL_TRUSTED_PROXIES if proxies is None else proxies))
    return address is not None and any(address in net for net in networks if net.version == address.version)


def client_address(request):
    """The client's address: the peer, unless the peer is a trusted proxy, in which case the
    right-most X-Forwarded-For entry that is not itself a trusted proxy.  Entries left of that
    one were written by the client and are never believed."""
    if request is None:
        return UNKNOWN_ADDRESS
    peer = _address(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return UNKNOWN_ADDRESS
    if not trusted_proxy(peer):
        return str(peer)
    client = peer
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = _address(hop)
        if address is None:  # garbage in the chain: stop at the last address we could trust
            break
        client = address
        if not trusted_proxy(address):
            break
    return str(client)


def login_name(request, credentials):
    """The name as the throttle counts it: case-insensitive, and storable (no NUL, <= 150)."""
    name = (credentials or {}).get("username") or ""
    return name.strip().lower().replace("\x00", "")[:150]


# --- Limits (read at each login, so the PORTAL_LOGIN_* settings stay the source) -------------


def failure_limit(request=None, credentials=None):
    return settings.PORTAL_LOGIN_MAX_FAILURES


def lockout(request=None):
    return timedelta(seconds=settings.PORTAL_LOGIN_LOCKOUT_SECONDS)


def message(seconds):
    minutes = max(1, math.ceil(seconds / 60))
    return f"too many failed logins; try again in {minutes} minute{'s' if minutes != 1 else ''}"


# --- The axes handler ------------------------------------------------------------------------


class LoginThrottle(AxesDatabaseHandler):
    """AXES_HANDLER.  Sets on the request: `login_locked_for` (seconds, when refused as locked)
    or `login_attempt_id` (the row whose attempt this login took)."""

    def is_locked(self, request, credentials=None):
        name = get_client_username(request, credentials)
        now = timezone.now()
        window = lockout(request)
        with transaction.atomic(using=router.db_for_write(AccessAttempt)):
            attempt, _ = AccessAttempt.objects.select_for_update().get_or_create(
                username=name,
                ip_address=request.axes_ip_address,
                user_agent="",  # one row per pair: a changed User-Agent must not start a new count
                defaults={"failures_since_start": 0, "attempt_time": now, "path_info": request.axes_path_info[:255],
                          "http_accept": request.axes_http_accept[:1025], "get_data": "", "post_data": ""},
            )
            if attempt.attempt_time <= now - window:  # the last attempt is older than the window
                attempt.failures_since_start = 0
            if attempt.failures_since_start >= failure_limit(request, credentials):
                request.login_locked_for = max(1, math.ceil((attempt.attempt_time + window - now).total_seconds()))
                return True
            attempt.failures_since_start += 1
            attempt.attempt_time = now
            attempt.path_info = request.axes_path_info[:255]
            attempt.save(update_fields=["failures_since_start", "attempt_time", "path_info"])
        request.login_attempt_id = attempt.pk
        return False

    def user_login_failed(self, sender, credentials, request=None, **kwargs):
        """The attempt was counted when it was taken; only a directory outage gives it back."""
        attempt_id = getattr(request, "login_attempt_id", None)
        if attempt_id is not None and getattr(request, "directory_unavailable", False):
            AccessAttempt.objects.filter(pk=attempt_id).update(failures_since_start=Greatest(F("failures_since_start") - 1, 0))
