"""The proxy's websocket side: exec, attach and port-forward as kubectl speaks them by default
(``v5.channel.k8s.io`` and older channel protocols, ``v2.portforward.k8s.io``).  The handshake is
decided like any proxied request, then upgraded to the cluster with the same subprotocols and
impersonation, and frames are relayed both ways unchanged until either side closes."""

import asyncio
import logging

import aiohttp
from channels.db import database_sync_to_async

from clusters.kube.outbound import ConnectionNotAllowed
from clusters.proxy import access, streams
from clusters.proxy.http import decide, upstream_headers, upstream_url
from clusters.proxy.upstream import describe, upstream_for

log = logging.getLogger("corral.proxy")

# Closing before accepting makes the server answer the handshake with 403; kubectl then falls back
# to SPDY (spdy.py), where the API server's own reason reaches it.
REFUSE = {"type": "websocket.close", "code": 1008}


async def proxy_websocket(scope, receive, send):
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    try:
        target, rest = await decide(scope, "POST", websocket=True)  # exec/attach/port-forward create a subresource
    except access.Refusal as refusal:
        log.info("proxy websocket refused: %s", refusal.message)
        return await send(REFUSE)
    try:
        upstream = await upstream_for(target.cluster_id, target.credentials)
    except (ValueError, OSError) as exc:
        log.info("cluster %s credentials unusable: %s", target.cluster_id, exc)
        return await send(REFUSE)
    url = upstream_url(upstream, rest, scope)
    headers = [(n, v) for n, v in upstream_headers(scope["headers"], target, upstream) if n.lower() != "origin"]
    status = 101
    try:
        upstream_ws = await upstream.session.ws_connect(
            url, protocols=scope.get("subprotocols") or (), headers=_multi(headers), autoping=True, max_msg_size=0,
            heartbeat=None,
        )
    except aiohttp.WSServerHandshakeError as exc:
        status = exc.status
        log.info("cluster %s refused a websocket upgrade for %s: %s", target.cluster_id, rest, exc.status)
        await send(REFUSE)
        return await database_sync_to_async(access.audit)(target, "POST", rest, status, verb="create")
    except (TimeoutError, aiohttp.ClientError, OSError, ConnectionNotAllowed) as exc:
        log.info("cluster %s unreachable for a websocket: %s", target.cluster_id, describe(exc, upstream.base))
        return await send(REFUSE)
    await send({"type": "websocket.accept", "subprotocol": upstream_ws.protocol})
    await database_sync_to_async(access.audit)(target, "POST", rest, status, verb="create")
    task = asyncio.current_task()
    streams.register(target.stream_key, task)
    up = asyncio.get_running_loop().create_task(_cluster_to_client(upstream_ws, send))
    try:
        while True:
            receiving = asyncio.ensure_future(receive())
            done, _ = await asyncio.wait({receiving, up}, return_when=asyncio.FIRST_COMPLETED)
            if up in done:
                receiving.cancel()
                break
            message = receiving.result()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes") is not None:
                await upstream_ws.send_bytes(message["bytes"])
            elif message.get("text") is not None:
                await upstream_ws.send_str(message["text"])
    except asyncio.CancelledError:
        task.uncancel()  # the token stopped being usable: close both sides below
        await send({"type": "websocket.close", "code": 4401, "reason": "token or session no longer usable"})
    finally:
        streams.unregister(target.stream_key, task)
        up.cancel()
        await upstream_ws.close()


async def _cluster_to_client(upstream_ws, send):
    async for message in upstream_ws:
        if message.type == aiohttp.WSMsgType.BINARY:
            await send({"type": "websocket.send", "bytes": message.data})
        elif message.type == aiohttp.WSMsgType.TEXT:
            await send({"type": "websocket.send", "text": message.data})
        else:
            break
    code = upstream_ws.close_code or 1000
    await send({"type": "websocket.close", "code": code if code in (1000, 1011) or 3000 <= code < 5000 else 1000})


def _multi(pairs):
    from multidict import CIMultiDict

    return CIMultiDict(pairs)
