"""The proxy's SPDY side: exec, attach and port-forward for kubectl that does not use websockets
(older versions, ``KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false``, ``KUBECTL_PORT_FORWARD_WEBSOCKETS=false``,
or its fallback when a websocket upgrade is refused).

ASGI knows only one upgrade, the websocket, so this is done in daphne's HTTP protocol (as daphne
itself hands a websocket over): a request on the proxy's path asking for ``Upgrade: SPDY/3.1`` is
decided like any proxied request (``decide``: token, cluster visibility, impersonation), sent on
to the cluster with its upgrade, and when the API server answers 101 the client's connection is
taken from HTTP and bytes are relayed both ways unchanged until either side closes, with
back-pressure each way.  Any other answer (RBAC's 403, a missing pod's 404) goes back as it is."""

import asyncio
import logging
import socket
from urllib.parse import unquote

from channels.db import database_sync_to_async
from django.conf import settings

from clusters.kube import outbound
from clusters.kube.outbound import ConnectionNotAllowed
from clusters.proxy import access, streams
from clusters.proxy.http import decide, status_body, upstream_headers
from clusters.proxy.upstream import describe, upstream_for
from portal.backpressure import flow_class
from portal.limits import PROXY_PREFIX

log = logging.getLogger("corral.proxy")
HEAD_LIMIT = 64 * 1024
BUFFER = 256 * 1024  # bytes from the client queued for the cluster before the client is paused


def is_spdy_upgrade(request):
    upgrade = (request.requestHeaders.getRawHeaders(b"upgrade") or [b""])[0].lower()
    return upgrade.startswith(b"spdy/") and request.path.startswith(PROXY_PREFIX.encode())


def install_in_daphne():
    """Let daphne's HTTP protocol hand SPDY upgrades on the proxy's path to ``relay`` (a no-op when
    daphne is not the server)."""
    import sys

    protocol = sys.modules.get("daphne.http_protocol")
    if protocol is None or getattr(protocol.WebRequest, "corral_spdy", False):
        return

    class SpdyWebRequest(protocol.WebRequest):
        corral_spdy = True

        def process(self):
            if is_spdy_upgrade(self) and not getattr(self, "_refused", False):
                asyncio.get_event_loop().create_task(relay(self))
                return None
            return super().process()

    protocol.WebRequest = SpdyWebRequest


def _scope(request):
    headers = [(name.lower(), value) for name, values in request.requestHeaders.getAllRawHeaders() for value in values]
    return {
        "path": unquote(request.path.decode("latin-1")), "raw_path": request.path,
        "query_string": request.uri.split(b"?", 1)[1] if b"?" in request.uri else b"", "headers": headers,
    }


def _answer(request, code, body, headers=()):
    if request.finished or request.channel is None or getattr(request, "_disconnected", False):
        return  # the client left meanwhile
    request.setResponseCode(code)
    for name, value in headers:
        request.responseHeaders.addRawHeader(name, value)
    if not request.responseHeaders.hasHeader(b"content-type"):
        request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"content-length", str(len(body)).encode())
    request.write(body)
    request.finish()


def _refuse(request, code, reason, message):
    _answer(request, code, status_body(code, reason, message))


async def _connect(upstream):
    """A connection to the cluster's API server, to an address the outbound policy allows."""
    from yarl import URL

    url = URL(upstream.base)
    port = url.port or (443 if url.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(url.host, port, type=socket.SOCK_STREAM)
    refused = None
    for _, _, _, _, address in infos:
        reason = outbound.refusal(address[0])
        if reason is None:
            ssl = upstream.ssl_context if url.scheme == "https" else None
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address[0], port, ssl=ssl, server_hostname=url.host if ssl else None, limit=HEAD_LIMIT),
                settings.KUBE_REQUEST_TIMEOUT,
            )
            return url, reader, writer
        refused = refused or ConnectionNotAllowed(url.host, address[0], reason)
    raise refused or OSError(f"{url.host} resolves to no address")


async def relay(request):
    method = request.method.decode("latin-1")
    scope = _scope(request)
    try:
        target, rest = await decide(scope, method)
    except access.Refusal as refusal:
        return _refuse(request, refusal.code, refusal.reason, refusal.message)
    try:
        upstream = await upstream_for(target.cluster_id, target.credentials)
    except (ValueError, OSError) as exc:
        return _refuse(request, 503, "ServiceUnavailable", f"Corral: cluster {target.cluster_name!r}'s stored credentials cannot be used: {exc}")
    try:
        url, reader, writer = await _connect(upstream)
    except (OSError, TimeoutError, ConnectionNotAllowed) as exc:
        return _refuse(request, 503, "ServiceUnavailable", f"Corral: cluster {target.cluster_name!r} cannot be reached: {describe(exc, upstream.base)}")
    path = url.raw_path.rstrip("/") + rest + (("?" + scope["query_string"].decode("latin-1")) if scope["query_string"] else "")
    head = [f"{method} {path} HTTP/1.1", f"Host: {url.raw_authority}"]
    head += [f"{name}: {value}" for name, value in upstream_headers(scope["headers"], target, upstream)]
    head += ["Connection: Upgrade", f"Upgrade: {request.requestHeaders.getRawHeaders(b'upgrade')[0].decode('latin-1')}", "Content-Length: 0"]
    status = 502
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), settings.KUBE_REQUEST_TIMEOUT)
        status_line, *lines = answer.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        if status != 101:
            headers = [tuple(part.strip().encode("latin-1") for part in line.split(":", 1)) for line in lines if ":" in line]
            length = next((int(v) for n, v in headers if n.lower() == b"content-length" and v.isdigit()), None)
            if length is not None and length > settings.PROXY_MAX_REQUEST_BYTES:
                raise ValueError(f"an answer of {length} bytes to an upgrade")
            body = await asyncio.wait_for(reader.readexactly(length) if length is not None else reader.read(HEAD_LIMIT), settings.KUBE_REQUEST_TIMEOUT)
            kept = [(n, v) for n, v in headers if n.lower() in (b"content-type", b"cache-control", b"audit-id")]
            writer.close()
            _answer(request, status, body, kept)
    except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        writer.close()
        status = 502
        _refuse(request, 502, "BadGateway", f"Corral: cluster {target.cluster_name!r} did not complete the upgrade: {str(exc) or type(exc).__name__}")
    log.info("SPDY upgrade to cluster %s for %s %s: %s", target.cluster_id, target.username, rest, status)
    await database_sync_to_async(access.audit)(target, method, rest, status, verb="create")
    if status == 101:
        await _take_over(request, answer, reader, writer, target)


def _relay_protocol():
    from twisted.internet.protocol import Protocol

    class Relay(Protocol):
        """The client's side once upgraded: its bytes go to the cluster."""

        def __init__(self, writer):
            self.writer, self.closed, self.paused = writer, asyncio.Event(), False

        def dataReceived(self, data):
            self.writer.write(data)
            if not self.paused and self.writer.transport.get_write_buffer_size() > BUFFER:
                self.paused = True
                self.transport.pauseProducing()
                asyncio.get_event_loop().create_task(self._drain())

        async def _drain(self):
            try:
                await self.writer.drain()
            except OSError:
                pass
            self.paused = False
            if not self.closed.is_set():
                self.transport.resumeProducing()

        def connectionLost(self, reason=None):
            self.closed.set()
            self.writer.close()

    return Relay


async def _take_over(request, answer, reader, writer, target):
    from twisted.protocols.policies import ProtocolWrapper

    channel = request.channel
    if channel is None or channel.transport is None or getattr(request, "_disconnected", False):
        writer.close()  # the client left while the cluster answered
        return
    channel.setTimeout(None)  # no HTTP idle timeout on a stream
    transport = channel.transport
    relay_side = _relay_protocol()(writer)
    if isinstance(transport, ProtocolWrapper):  # TLS wraps the HTTP protocol
        transport.wrappedProtocol = relay_side
    else:
        transport.protocol = relay_side
    request.transport = None
    relay_side.makeConnection(transport)
    flow = flow_class()()
    transport.unregisterProducer()  # the HTTP channel's, now the relay's
    transport.registerProducer(flow, True)
    transport.write(answer)
    request.server.protocol_disconnected(request)
    channel._networkProducer.resumeProducing()  # HTTP paused reading while the request was handled
    task = asyncio.current_task()
    streams.register(target.stream_key, task)
    try:
        while not relay_side.closed.is_set():
            data = await reader.read(BUFFER)
            if not data:
                break
            if not flow.writable.is_set():
                try:
                    await asyncio.wait_for(flow.writable.wait(), settings.STALLED_CLIENT_SECONDS)
                except TimeoutError:
                    log.info("SPDY client of cluster %s read nothing for %ss: disconnected", target.cluster_id, settings.STALLED_CLIENT_SECONDS)
                    break
            if relay_side.closed.is_set():
                break
            transport.write(data)
    except asyncio.CancelledError:
        task.uncancel()  # the token stopped being usable: close both sides below
    except OSError:
        pass
    finally:
        streams.unregister(target.stream_key, task)
        writer.close()
        if not relay_side.closed.is_set():
            transport.loseConnection()
