"""Async connections to clusters' API servers for the proxy: one aiohttp session per cluster and
credentials, TLS from the stored credentials, and the outbound network policy checked on every
address connected to (the same ``clusters.kube.outbound.refusal`` the synchronous clients use).
The watcher's HTTP/2 connections (httpcore) go through ``GuardedBackend``, the same check."""

import asyncio
import hashlib
import ipaddress
import json
import os
import socket
import ssl
import tempfile

import aiohttp
import httpcore
from django.conf import settings

from clusters.kube import outbound
from clusters.kube.outbound import ConnectionNotAllowed


class GuardedConnector(aiohttp.TCPConnector):
    """A connector that connects only to addresses the outbound policy allows.  aiohttp connects
    to exactly the addresses resolved here (IP literals included), so nothing is looked up twice."""

    async def _resolve_host(self, host, port, traces=None):
        hosts = await super()._resolve_host(host, port, traces=traces)
        allowed, refused = [], None
        for entry in hosts:
            reason = outbound.refusal(entry["host"])
            if reason is None:
                allowed.append(entry)
            elif refused is None:
                refused = ConnectionNotAllowed(host, entry["host"], reason)
        if not allowed:
            raise refused or OSError(f"{host} resolves to no address")
        return allowed


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend (anyio's sockets and TLS), connecting only to addresses the
    outbound policy allows: the host name is resolved here, each address checked before a packet is
    sent to it, the socket connects to that very address (an IP literal: nothing is looked up again),
    and the peer actually connected to is checked again.  TLS (SNI, hostname check) still uses the
    name in the URL: httpcore starts it on the stream returned here."""

    def __init__(self, policy=outbound.CLUSTERS):
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        async def attempt(address):
            stream = await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                  socket_options=socket_options)
            peer = stream.get_extra_info("server_addr")
            return stream, peer[0] if peer else None, stream.aclose

        return await self._connect(host, port, timeout, attempt)

    async def connect_socket(self, host, port, timeout=None):
        """A connected non-blocking TCP socket to ``host`` (for a transport of the caller's own,
        TLS started on it by ``loop.create_connection(sock=...)``), under the same policy as
        ``connect_tcp``."""
        loop = asyncio.get_running_loop()

        async def attempt(address):
            sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                async with asyncio.timeout(timeout):
                    await loop.sock_connect(sock, (address, port))
                peer = sock.getpeername()[0]
            except TimeoutError as exc:
                sock.close()
                raise httpcore.ConnectTimeout(f"connecting to {host} ({address}) timed out") from exc
            except OSError as exc:
                sock.close()
                raise httpcore.ConnectError(f"connecting to {host} ({address}): {exc.strerror or exc}") from exc

            async def close():
                sock.close()

            return sock, peer, close

        return await self._connect(host, port, timeout, attempt)

    async def _connect(self, host, port, timeout, attempt):
        """``attempt(address)`` (the connection, the peer's address, how to close it) on each
        address of ``host`` the policy allows, checked before connecting; the peer actually
        connected to is checked again."""
        host = host.strip("[]")
        error = refused = None
        for address in await self._addresses(host, port, timeout):
            reason = outbound.refusal(address, self.policy)
            if reason is not None:
                refused = refused or ConnectionNotAllowed(host, address, reason)
                continue
            try:
                connected, peer, close = await attempt(address)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            reason = outbound.refusal(peer, self.policy) if peer else "the connected address is unknown"
            if reason is not None:
                await close()
                raise ConnectionNotAllowed(host, peer or address, reason)
            return connected
        if error is not None:
            raise error
        raise refused or httpcore.ConnectError(f"{host} resolves to no address")

    @staticmethod
    async def _addresses(host, port, timeout):
        """The addresses of ``host``: an IP literal as it is (no lookup on the loop's executor,
        where a thousand connections opened at once would queue), a name resolved."""
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        try:
            found = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        return list(dict.fromkeys(sockaddr[0] for *_, sockaddr in found))

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise ConnectionNotAllowed(path, path, "only TCP connections are made to API servers")

    async def sleep(self, seconds):
        await self.inner.sleep(seconds)


def ssl_context(credentials):
    context = ssl.create_default_context()
    if credentials.get("ca_data"):
        context = ssl.create_default_context(cadata=credentials["ca_data"])
    if credentials.get("insecure_skip_tls_verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if credentials.get("client_cert") and credentials.get("client_key"):
        # The ssl module loads a key pair only from files: write them privately, load, remove.
        with tempfile.TemporaryDirectory(prefix="corral-proxy-") as directory:
            paths = []
            for name in ("client.crt", "client.key"):
                path = os.path.join(directory, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(credentials["client_cert" if name == "client.crt" else "client_key"])
                paths.append(path)
            context.load_cert_chain(*paths)
    return context


class Upstream:
    """What the proxy needs to talk to one cluster: base URL, session, and auth headers."""

    def __init__(self, credentials):
        self.base = credentials["server"].rstrip("/")
        self.headers = {}
        if credentials.get("token"):
            self.headers["Authorization"] = "Bearer " + credentials["token"]
        self.ssl_context = ssl_context(credentials)
        connector = GuardedConnector(ssl=self.ssl_context, limit=0, limit_per_host=0, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # bytes pass through as the API server encoded them
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, connect=settings.KUBE_REQUEST_TIMEOUT, sock_read=None),
        )

    async def close(self):
        await self.session.close()


_upstreams = {}


def _fingerprint(credentials):
    return hashlib.sha256(json.dumps(credentials, sort_keys=True).encode()).hexdigest()


async def upstream_for(cluster_id, credentials):
    """The cached Upstream of a cluster; a new one when its credentials changed."""
    key = (cluster_id, _fingerprint(credentials))
    found = _upstreams.get(cluster_id)
    if found is not None and found[0] == key:
        return found[1]
    upstream = Upstream(credentials)
    _upstreams[cluster_id] = (key, upstream)
    if found is not None:
        await found[1].close()
    return upstream


async def close_all():
    while _upstreams:
        _, (_, upstream) = _upstreams.popitem()
        await upstream.close()


def describe(exc, server=""):
    """Words for why the API server could not be reached."""
    where = f" at {server}" if server else ""
    if isinstance(exc, ConnectionNotAllowed):
        return str(exc)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError) or isinstance(exc, ssl.SSLError):
        return f"the API server's TLS certificate{where} is not trusted"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, ConnectionNotAllowed):
            return str(cause)
        return f"cannot connect to the API server{where} ({cause.strerror or cause})"
    if isinstance(exc, TimeoutError):
        return f"the API server{where} did not answer in time"
    return f"error talking to the API server{where}: {exc}"
