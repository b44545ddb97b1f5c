"""Limits before work: a request body over PORTAL_MAX_REQUEST_BYTES is refused with a 413 before it
is buffered, whoever sends it (no authentication has run yet).

Two places, because servers differ:
- ``BodyLimitMiddleware`` wraps the ASGI application: it answers 413 from the ``content-length``
  header without reading the body, and counts ``http.request`` chunks of bodies without one.
  Servers that stream the body to the application (uvicorn, hypercorn) need nothing else.
- daphne reads the whole body into a file and then queues all of it in memory before the
  application runs (django/daphne#483), so ``LimitedWebRequest`` refuses it in daphne's HTTP
  protocol as the headers and then the chunks arrive, and closes the connection.
"""

import json

from django.conf import settings

PROXY_PREFIX = "/k8s/"


def max_body_bytes(path=""):
    """The body limit of a request to ``path``: the Kubernetes API proxy takes what an API server
    takes (``PORTAL_PROXY_MAX_REQUEST_BYTES``, 3 MiB), everything else ``PORTAL_MAX_REQUEST_BYTES``."""
    if isinstance(path, bytes):
        path = path.decode("latin-1")
    if path.startswith(PROXY_PREFIX):
        return settings.PROXY_MAX_REQUEST_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def too_large_body(path=""):
    return json.dumps({"detail": f"request body too large (the limit is {max_body_bytes(path)} bytes)"}).encode()


class BodyLimitMiddleware:
    """ASGI middleware: refuse HTTP request bodies over the limit by length, then while streaming."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        limit = max_body_bytes(path)
        length = _content_length(scope)
        if length is not None and length > limit:
            return await _refuse(send, path)
        received = 0
        refused = False

        async def limited_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # The application hears a disconnect and stops; the 413 is sent below.
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        response_started = False

        async def tracking_send(message):
            nonlocal response_started
            if refused:
                return  # the 413 below is the answer
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)
        if refused and not response_started:
            await _refuse(send, path)


def _content_length(scope):
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send, path=""):
    body = too_large_body(path)
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


def limit_daphne_requests():
    """Make daphne refuse oversized bodies as they arrive (a no-op when daphne is not the server)."""
    import sys

    protocol = sys.modules.get("daphne.http_protocol")
    if protocol is None or getattr(protocol.WebRequest, "corral_limited", False):
        return
    protocol.WebRequest = _limited_web_request(protocol.WebRequest)


def _limited_web_request(web_request):
    import io

    class LimitedWebRequest(web_request):
        """daphne's request, refusing a body over the limit from its Content-Length, or as soon as
        the chunks received pass it, instead of spooling it and queueing it whole."""

        corral_limited = True
        _refused = False
        _received = 0

        def _limit(self):
            # The request line is parsed before the headers: the channel holds its target.
            return max_body_bytes(getattr(self.channel, "_path", b"") or b"")

        def gotLength(self, length):
            if length is not None and length > self._limit():
                self.content = io.BytesIO()
                self._refuse()
                return
            super().gotLength(length)

        def handleContentChunk(self, data):
            if self._refused:
                return
            self._received += len(data)
            if self._received > self._limit():
                self._refuse()
                return
            super().handleContentChunk(data)

        def process(self):
            if self._refused:
                return None
            return super().process()

        def _refuse(self):
            self._refused = True
            body = too_large_body(getattr(self.channel, "_path", b"") or b"")
            head = (
                b"HTTP/1.1 413 Request Entity Too Large\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            )
            self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the answer
            transport = self.channel.transport
            transport.write(head + body)
            transport.loseConnection()

    return LimitedWebRequest
