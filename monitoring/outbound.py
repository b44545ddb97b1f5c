"""Where notifiers may connect: ``PORTAL_NOTIFIER_ALLOWED_NETWORKS`` / ``PORTAL_NOTIFIER_DENIED_NETWORKS``.

A notifier's URL or SMTP host is typed in by a cluster or project owner, so it is a door into
Corral's own network (SSRF).  The cluster clients' mechanism (``clusters.kube.outbound``) applies
with the notifiers' own lists: every address the host resolves to is checked when the socket is
opened (no second lookup for DNS to rebind), and the peer once connected.  Saving a notifier whose
host resolves to a refused address is a 400 naming the address and the rule; a delivery refused
at send time records the same words.  No HTTP proxy is used (its address would be the one checked).
"""

import ipaddress
import smtplib
import socket
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from clusters.kube import outbound
from clusters.kube.outbound import ConnectionNotAllowed

NOTIFIERS = outbound.Policy("NOTIFIER_ALLOWED_NETWORKS", "NOTIFIER_DENIED_NETWORKS", "PORTAL_NOTIFIER_ALLOWED_NETWORKS",
                            "PORTAL_NOTIFIER_DENIED_NETWORKS")


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        outbound.guard(self.poolmanager, NOTIFIERS)


def session():
    """A ``requests`` session whose every connection obeys the notifiers' policy."""
    s = requests.Session()
    s.trust_env = False  # no proxy from the environment: the policy checks the receiver's own address
    s.mount("http://", _GuardedAdapter())
    s.mount("https://", _GuardedAdapter())
    return s


def refused_by(exc):
    """The ``ConnectionNotAllowed`` somewhere in an exception's chain (requests wraps it twice), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectionNotAllowed):
            return exc
        for inner in (getattr(exc, "reason", None), *(a for a in getattr(exc, "args", ()) if isinstance(a, BaseException))):
            found = refused_by(inner) if isinstance(inner, BaseException) and id(inner) not in seen else None
            if found:
                return found
        exc = exc.__cause__ or exc.__context__
    return None


class SMTP(smtplib.SMTP):
    """``smtplib.SMTP`` connecting only where the notifiers' policy allows."""

    def _get_socket(self, host, port, timeout):
        return outbound.create_connection((host, port), timeout, self.source_address, policy=NOTIFIERS)


def host_problem(host, port):
    """Why a notifier may not use ``host`` (it resolves to a refused address), or None.  A host
    that does not resolve now is let through: the delivery will say so."""
    host = (host or "").strip("[]")
    if not host:
        return None
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        try:
            addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
        except (OSError, UnicodeError):
            return None
    for address in addresses:
        reason = outbound.refusal(address, NOTIFIERS)
        if reason:
            return str(ConnectionNotAllowed(host, address, reason))
    return None


def url_problem(url):
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None  # the URL validator names it
    return host_problem(parts.hostname, port)
