"""Which networks Corral may connect to for a cluster's API server, enforced on the socket.

``PORTAL_CLUSTER_ALLOWED_NETWORKS`` / ``PORTAL_CLUSTER_DENIED_NETWORKS`` (settings
``CLUSTER_ALLOWED_NETWORKS`` / ``CLUSTER_DENIED_NETWORKS``) list CIDRs; denied wins.  The check runs
where urllib3 opens the TCP connection of Corral's cluster clients: every address the host name
resolves to is checked before a packet is sent to it, the socket connects to that very address (no
second lookup, so DNS rebinding has nothing to rebind), and the peer actually connected to is
checked again.  Only the pools of ``clusters.kube.client.api_client`` use it; nothing global.

The same mechanism serves other outbound doors with their own settings (a ``Policy``): the alert
notifiers' URLs and SMTP hosts (``monitoring.outbound``).
"""

import ipaddress
import socket
import sys
from dataclasses import dataclass

from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

ALLOWED_ENV = "PORTAL_CLUSTER_ALLOWED_NETWORKS"
DENIED_ENV = "PORTAL_CLUSTER_DENIED_NETWORKS"


@dataclass(frozen=True)
class Policy:
    """Which settings say the allowed and denied networks, and the variables named in refusals."""

    allowed_setting: str
    denied_setting: str
    allowed_env: str
    denied_env: str


CLUSTERS = Policy("CLUSTER_ALLOWED_NETWORKS", "CLUSTER_DENIED_NETWORKS", ALLOWED_ENV, DENIED_ENV)


class ConnectionNotAllowed(Exception):
    """The outbound policy forbids this address; the message names the address and the rule."""

    def __init__(self, host, address, reason):
        self.host, self.address, self.reason = host, address, reason
        shown = address if host in (address, f"[{address}]") else f"{host} ({address})"
        super().__init__(f"connecting to {shown} is not allowed: {reason}")


def _networks(values):
    if isinstance(values, str):
        values = values.split(",")
    return [ipaddress.ip_network(v.strip()) for v in values if v.strip()]


def refusal(address, policy=CLUSTERS):
    """Why Corral may not connect to ``address`` (an IP address string), or None if it may."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped:  # ::ffff:a.b.c.d is a.b.c.d
        ip = ip.ipv4_mapped
    if ip.is_unspecified:  # connecting to 0.0.0.0 or :: reaches this host
        ip = ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
    for network in _networks(getattr(settings, policy.denied_setting)):
        if ip in network:
            return f"it is in {network} ({policy.denied_env})"
    allowed = _networks(getattr(settings, policy.allowed_setting))
    if not any(ip in network for network in allowed):
        return f"it is not in {policy.allowed_env} ({', '.join(map(str, allowed)) or 'empty'})"
    return None


def check(host, address, policy=CLUSTERS):
    reason = refusal(address, policy)
    if reason:
        raise ConnectionNotAllowed(host, address, reason)


def create_connection(address, timeout=_DEFAULT_TIMEOUT, source_address=None, socket_options=None, policy=CLUSTERS):
    """urllib3's ``create_connection``, connecting only to addresses the policy allows."""
    host, port = address
    host = host.strip("[]")
    error = refused = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM):
        try:
            check(host, sockaddr[0], policy)
        except ConnectionNotAllowed as exc:
            refused = refused or exc
            continue
        sock = None
        try:
            sock = socket.socket(family, kind, proto)
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            if sock is not None:
                sock.close()
            error = exc
            continue
        try:
            check(host, sock.getpeername()[0], policy)
        except ConnectionNotAllowed:
            sock.close()
            raise
        return sock
    if error is not None:
        raise error
    if refused is not None:
        raise refused
    raise OSError("getaddrinfo returns an empty list")


class _Guarded:
    policy = CLUSTERS

    def _new_conn(self):
        # As urllib3's HTTPConnection._new_conn, with the guarded create_connection.
        try:
            sock = create_connection((self._dns_host, self.port), self.timeout,
                                     source_address=self.source_address, socket_options=self.socket_options, policy=self.policy)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


class GuardedHTTPConnection(_Guarded, HTTPConnection):
    pass


class GuardedHTTPSConnection(_Guarded, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


_pool_classes = {}


def _pools(policy):
    """Connection pool classes whose connections obey ``policy`` (made once per policy)."""
    if policy not in _pool_classes:
        http = type("GuardedHTTPConnection", (GuardedHTTPConnection,), {"policy": policy})
        https = type("GuardedHTTPSConnection", (GuardedHTTPSConnection,), {"policy": policy})
        _pool_classes[policy] = {"http": type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
                                 "https": type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https})}
    return _pool_classes[policy]


def guard(pool_manager, policy=CLUSTERS):
    """Make every connection ``pool_manager`` opens obey the policy."""
    pool_manager.pool_classes_by_scheme = (
        {"http": GuardedHTTPConnectionPool, "https": GuardedHTTPSConnectionPool} if policy is CLUSTERS else dict(_pools(policy)))
    return pool_manager
