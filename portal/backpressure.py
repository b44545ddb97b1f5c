"""Back-pressure under daphne, for responses that stream (the Kubernetes API proxy's watches and
``logs -f``, large answers).

daphne writes every ASGI ``send`` into Twisted's transport buffer at once and returns: it has no
flow control (uvicorn has), so a client that stops reading would make the web process hold all
that the application goes on sending, without bound.  Here each daphne request registers a
streaming producer (Twisted's own IPushProducer contract: the transport pauses it when its write
buffer passes 64 KiB and resumes it when drained), and ``send`` of a body chunk waits while it is
paused.  The proxy then stops reading from the API server, whose own TCP flow control takes over:
memory stays bounded by the buffers' sizes.  A client that takes nothing for
``PORTAL_STALLED_CLIENT_SECONDS`` is disconnected; the application hears ``http.disconnect`` and the
proxy closes its connection to the cluster.
"""

import asyncio
import logging

from django.conf import settings
from zope.interface import implementer

log = logging.getLogger("corral.backpressure")
_flow_class = None


def flow_class():
    from twisted.internet.interfaces import IPushProducer

    global _flow_class
    if _flow_class is not None:
        return _flow_class

    @implementer(IPushProducer)
    class Flow:
        """Writable while the client's connection takes what is written to it."""

        def __init__(self, paused=False):
            self.writable = asyncio.Event()
            if not paused:
                self.writable.set()

        def pauseProducing(self):
            self.writable.clear()

        def resumeProducing(self):
            self.writable.set()

        def stopProducing(self):
            self.writable.set()  # the connection is going: nobody waits for it

    _flow_class = Flow
    return Flow


def apply_to_daphne():
    """Give daphne's HTTP responses flow control (a no-op when daphne is not the server)."""
    import sys

    protocol = sys.modules.get("daphne.http_protocol")
    server = sys.modules.get("daphne.server")
    if protocol is None or server is None or getattr(protocol.WebRequest, "corral_flow_control", False):
        return
    protocol.WebRequest = _flowing_web_request(protocol.WebRequest, flow_class())
    original = server.Server.handle_reply

    async def handle_reply(self, protocol, message):
        await original(self, protocol, message)
        flow = getattr(protocol, "corral_flow", None)
        streaming = message.get("more_body") or message["type"] in ("websocket.send",)
        if flow is None or flow.writable.is_set() or not streaming:
            return
        try:
            await asyncio.wait_for(flow.writable.wait(), settings.STALLED_CLIENT_SECONDS)
        except TimeoutError:
            channel = getattr(protocol, "channel", None)
            transport = channel.transport if channel is not None else getattr(protocol, "transport", None)
            if transport is not None:
                log.info("client %s read nothing for %ss: disconnected", getattr(protocol, "client_addr", None), settings.STALLED_CLIENT_SECONDS)
                transport.abortConnection()

    server.Server.handle_reply = handle_reply


def _flowing_web_request(web_request, flow_class):
    class FlowingWebRequest(web_request):
        corral_flow_control = True
        corral_flow = None

        def process(self):
            if self.channel is None:
                return super().process()
            flow = flow_class(paused=bool(getattr(self.channel, "_waitingForTransport", False)))
            upgrade = (self.requestHeaders.getRawHeaders(b"upgrade") or [b""])[0].lower()
            if upgrade == b"websocket":
                # daphne hands the connection to its websocket protocol and leaves the HTTP channel
                # the transport's producer: the channel passes pause/resume on to this flow.
                transport = self.channel.transport
                result = super().process()
                websocket = getattr(transport, "wrappedProtocol", None) or getattr(transport, "protocol", None)
                if websocket is not None and websocket is not self.channel and self.channel._requestProducer is None:
                    websocket.corral_flow = flow
                    self.channel.registerProducer(flow, True)
                return result
            if not upgrade:
                self.corral_flow = flow
                self.registerProducer(flow, True)
            return super().process()

        def _let_go(self):
            if self.corral_flow is not None:
                self.corral_flow.writable.set()
                if self.producer is not None and self.channel is not None:
                    self.unregisterProducer()

        def finish(self):
            self._let_go()
            return super().finish()

        def connectionLost(self, reason):
            self._let_go()
            return super().connectionLost(reason)

    return FlowingWebRequest
