"""The proxy's HTTP side: one ASGI application that authenticates, decides, and forwards to the
cluster with impersonation, streaming the answer as it comes (watches, ``logs -f``)."""

import asyncio
import hashlib
import json
import logging
import time

import aiohttp
from channels.db import database_sync_to_async
from django.conf import settings

from clusters.kube.outbound import ConnectionNotAllowed
from clusters.proxy import access, streams
from clusters.proxy.upstream import describe, upstream_for

log = logging.getLogger("corral.proxy")

# Never forwarded either way: hop-by-hop headers, and what only concerns Corral.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers",
    b"transfer-encoding", b"upgrade", b"host", b"content-length",
})
WHOLE_BODY_BYTES = 256 * 1024
NOT_FORWARDED = HOP_BY_HOP | {b"authorization", b"cookie", b"x-csrftoken"}


def status_body(code, reason, message):
    return json.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    }).encode()


async def answer(send, code, reason, message):
    body = status_body(code, reason, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if code == 401:
        headers.append((b"www-authenticate", b'Bearer realm="corral"'))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def refused_headers(headers):
    """Why the request's own headers are refused, or None: nobody picks whom Corral impersonates."""
    for name, _ in headers:
        if name.startswith(b"impersonate-") or name.startswith(b"x-remote-"):
            return f"Corral: the {name.decode('latin-1')} header is not allowed; Corral impersonates you itself"
    return None


def upstream_headers(scope_headers, target, upstream):
    headers = []
    for name, value in scope_headers:
        if name not in NOT_FORWARDED and not name.startswith(b"sec-websocket"):
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
    headers.extend(upstream.headers.items())
    headers.append(("Impersonate-User", target.impersonate_user))
    headers.extend(("Impersonate-Group", group) for group in target.impersonate_groups)
    return headers


async def decide(scope, method, websocket=False):
    """The Target of a request, or raises access.Refusal (401, 403, 404, 503)."""
    # The path goes on as the client encoded it (raw_path): decoding and re-encoding could turn
    # an escaped "?" or "/" into another request.  Dot segments could climb out of a server URL
    # with a path prefix, so they are refused.
    raw = scope.get("raw_path") or scope["path"].encode()
    match = access.PATH.match(raw.decode("latin-1"))
    if match is None:
        raise access.Refusal(404, "NotFound", "Corral: the proxy serves /k8s/clusters/<id>/...")
    if any(segment in (".", "..") for segment in scope["path"].split("/")):
        raise access.Refusal(400, "BadRequest", "Corral: dot segments (. and ..) are not allowed in the path")
    headers = dict(scope["headers"])
    problem = refused_headers(scope["headers"])
    if problem:
        raise access.Refusal(403, "Forbidden", problem)
    presented = access.bearer(headers)
    key = (hashlib.sha256(presented.encode()).digest(), int(match["id"]), method in access.SAFE_METHODS) if presented else None
    target = streams.decisions.get(key) if key else None
    if target is None or target[0] < time.monotonic():
        target = await database_sync_to_async(access.authorize)(presented, int(match["id"]), method, headers, websocket)
        if key:
            if len(streams.decisions) > 10000:
                streams.decisions.clear()
            streams.decisions[key] = (time.monotonic() + settings.PROXY_DECISION_CACHE_SECONDS, target)
    else:
        target = target[1]
    return target, match["rest"] or "/"


def upstream_url(upstream, rest, scope):
    from yarl import URL

    query = scope.get("query_string") or b""
    return URL(upstream.base + rest + (("?" + query.decode("latin-1")) if query else ""), encoded=True)


async def read_body(receive):
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def proxy_http(scope, receive, send):
    method = scope["method"]
    try:
        target, rest = await decide(scope, method)
    except access.Refusal as refusal:
        return await answer(send, refusal.code, refusal.reason, refusal.message)
    # SPDY upgrades are taken before ASGI under daphne (spdy.py). Under another server they arrive
    # here; upgrade headers are hop-by-hop and not forwarded, so the API server answers the plain
    # request: RBAC's 403 or a missing pod's 404, the real reason, or 400 "Upgrade request required".
    body = await read_body(receive)
    if body is None:
        return
    try:
        upstream = await upstream_for(target.cluster_id, target.credentials)
    except (ValueError, OSError) as exc:  # ssl.SSLError is an OSError: a CA or key that does not load
        return await answer(send, 503, "ServiceUnavailable", f"Corral: cluster {target.cluster_name!r}'s stored credentials cannot be used: {exc}")
    url = upstream_url(upstream, rest, scope)
    headers = upstream_headers(scope["headers"], target, upstream)
    mutating = method not in access.SAFE_METHODS
    try:
        response = await upstream.session.request(method, url, headers=headers, data=body or None, allow_redirects=False)
    except (TimeoutError, aiohttp.ClientError, OSError, ConnectionNotAllowed) as exc:
        message = f"Corral: cluster {target.cluster_name!r} cannot be reached: {describe(exc, upstream.base)}"
        return await answer(send, 503, "ServiceUnavailable", message)
    try:
        await relay(response, receive, send, target)
    finally:
        response.release()
        if mutating:
            await database_sync_to_async(access.audit)(target, method, rest, response.status, body=body)


async def relay(response, receive, send, target):
    headers = [
        (name.lower(), value) for name, value in response.raw_headers if name.lower() not in HOP_BY_HOP
    ]
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        headers.append((b"content-length", length.encode()))
        if int(length) <= WHOLE_BODY_BYTES:
            # A small answer of known size: read it and send it at once (most GETs and writes).
            body = await response.read()
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        # A large one (a big LIST) goes on in pieces: never held whole in memory.
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        async for chunk in response.content.iter_chunked(WHOLE_BODY_BYTES):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    # daphne sends the headers with the first body bytes: an empty chunk sends them now, so a
    # watch is answered as soon as the API server answers, not at its first event.
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    pump = asyncio.current_task()
    streams.register(target.stream_key, pump)
    gone = asyncio.get_running_loop().create_task(_until_disconnect(receive))

    def client_left(task):
        if not task.cancelled():
            pump.cancel("client went away")

    gone.add_done_callback(client_left)
    try:
        async for chunk in response.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except asyncio.CancelledError:
        # The client left, or the token stopped being usable: end the stream, free the connection.
        pump.uncancel()
        response.close()
        if not gone.done():
            await send({"type": "http.response.body", "body": b""})
    except (aiohttp.ClientError, OSError):
        response.close()
        await send({"type": "http.response.body", "body": b""})
    finally:
        gone.cancel()
        streams.unregister(target.stream_key, pump)


async def _until_disconnect(receive):
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
