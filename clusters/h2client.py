"""A small HTTP/2 client for the watcher: one connection per cluster, a stream per watch.

httpcore's HTTP/2 connection lets whichever request holds its read lock read the socket for all;
with long-lived streams a request waiting for that lock sits on events already received for it
until more bytes arrive on the connection (seen here: a pod's Running held for 30 s).  So this
connection parses what arrives as it arrives (an asyncio protocol: TLS through ``ssl.MemoryBIO``,
then h2) and hands each stream's data to it at once, and flow control does the back-pressure: a
stream's data is acknowledged only when its watch takes it, so a watch that stops reading stops
its API server from sending more on that stream (at most WINDOW bytes wait).  No reading task and
no stream layers: anyio's and httpcore's per-call layers under every read and write were a tenth
of a takeover's time.

The socket comes from ``clusters.proxy.upstream.GuardedBackend.connect_socket``: the outbound
policy checked on each address before connecting and on the address actually connected to, TLS
started only then.  ``NotHTTP2`` says the server did not choose h2 in TLS ALPN (or the address is
plain http): the caller uses HTTP/1.1 then.
"""

import asyncio
import ssl
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

WINDOW = 64 * 1024  # per stream: what may wait unread for one watch (64 KiB: 1.3 MB/s a watch at 50 ms round trip)
CONNECTION_WINDOW = 1024 * 1024  # for the whole connection: more than its ten streams together, so one stalled stream stalls no other


class NotHTTP2(Exception):
    """The server does not speak HTTP/2 (over TLS, by ALPN)."""


class StreamError(Exception):
    """The stream or its connection ended before the response did."""


class _Silence:
    """Put in a stream's queue by its read timeout's timer."""

    __slots__ = ()


def _retrieve(future):
    if not future.cancelled():
        future.exception()


class Response:
    def __init__(self, connection, stream_id):
        self.connection, self.stream_id = connection, stream_id
        self.status = None
        self.headers = asyncio.get_running_loop().create_future()
        # Its waiter may be gone when a failure is set (a watch stopped while waiting for its
        # headers, then the connection closed): not logged as an exception never retrieved.
        self.headers.add_done_callback(_retrieve)
        self.chunks = asyncio.Queue()
        self.ended = False

    async def iter_chunks(self, read_timeout):
        """The body as it arrives; each chunk acknowledged (flow control) once taken."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                item = self.chunks.get_nowait()
            except asyncio.QueueEmpty:
                # Silence for ``read_timeout`` puts a mark of this wait in the queue: a timer, not
                # asyncio.wait_for, whose task per chunk was a tenth of a takeover's time.
                silence = _Silence()
                timer = loop.call_later(read_timeout, self.chunks.put_nowait, silence)
                try:
                    item = await self.chunks.get()
                finally:
                    timer.cancel()
                if item is silence:
                    # The API server sends bookmarks and ends each watch in time: silence this
                    # long is a dead connection; every stream on it starts again on a new one.
                    await self.connection.close("no data within the read timeout")
                    raise TimeoutError("no data within the read timeout")
            if isinstance(item, _Silence):
                continue  # the mark of a wait that got its chunk just before the timer went off
            if isinstance(item, Exception):
                raise item
            if item is None:
                self.ended = True
                return
            data, flow = item
            self.connection.acknowledge(self.stream_id, flow)
            yield data

    async def aclose(self):
        self.connection.forget(self.stream_id, reset=not self.ended)


class _Protocol(asyncio.Protocol):
    """TLS over the socket (``ssl.MemoryBIO``), HTTP/2 above it: what arrives is decrypted and
    parsed as it is received (no reading task, no await per read), and what is written goes to
    the transport's buffer at once.  (Not asyncio's own TLS transport: it keeps a 256 KiB read
    buffer for each connection, 250 MiB for a shard's thousand clusters.)"""

    def __init__(self, connection, ssl_context, server_hostname):
        self.connection = connection
        connection.protocol = self  # (written to as soon as TLS is up: h2 answers what arrives before open() resumes)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ssl_context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self.handshaken = asyncio.get_running_loop().create_future()  # what the server chose in ALPN
        self.handshaken.add_done_callback(_retrieve)
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self._handshake()

    def _handshake(self):
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._send()
            return
        except Exception as exc:  # noqa: BLE001 - the opening's error
            self._send()
            if not self.handshaken.done():
                self.handshaken.set_exception(exc)
            return
        self._send()
        self.connection.alpn = self.tls.selected_alpn_protocol()
        self.handshaken.set_result(self.connection.alpn)

    def data_received(self, data):
        self.incoming.write(data)
        if not self.handshaken.done():
            self._handshake()
            if not self.handshaken.done() or self.handshaken.exception() is not None:
                return
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.connection._shut("the server closed the connection")
                return
            except ssl.SSLError as exc:
                self.connection._shut(f"TLS: {exc}")
                return
            if not chunk:
                break
            self.connection._received(chunk)
        self._send()  # (what reading made TLS answer)

    def write(self, data):
        try:
            self.tls.write(data)
        except ssl.SSLError as exc:
            self.connection._shut(f"TLS: {exc}")
            return
        self._send()

    def close(self):
        try:
            self.tls.unwrap()  # close_notify, not waiting for the server's
        except (ssl.SSLError, ValueError):
            pass
        if self.transport is not None:
            self._send()
            self.transport.close()

    def _send(self):
        data = self.outgoing.read()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def eof_received(self):
        self.connection._shut("the server closed the connection")

    def connection_lost(self, exc):
        if not self.handshaken.done():
            self.handshaken.set_exception(ConnectionError(f"the connection was lost during TLS: {exc}" if exc else
                                                          "the server closed the connection during TLS"))
        self.connection._shut(f"the connection was lost: {exc}" if exc else "the server closed the connection")


class Connection:
    """One HTTP/2 connection to an API server.  Everything runs on the event loop: the h2 state
    machine is only touched there, and writes (requests, flow-control acknowledgements) go to the
    transport's buffer without waiting (a watcher's own writes are a few bytes each)."""

    def __init__(self, endpoint, ssl_context, backend, connect_timeout):
        parts = urlsplit(endpoint)
        self.scheme, self.host, self.authority = parts.scheme, parts.hostname, parts.netloc
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl_context, self.backend, self.connect_timeout = ssl_context, backend, connect_timeout
        self.transport = self.protocol = None
        self.h2 = None
        self.alpn = None  # what the server chose in TLS ALPN
        self.responses = {}
        self.closed = None  # why, once closed

    async def open(self):
        if self.scheme != "https":
            raise NotHTTP2("plain http")
        self.ssl_context.set_alpn_protocols(["h2", "http/1.1"])
        # The request headers are this module's own (lowercase names, no connection headers, a path
        # built by urlencode): h2's checks and normalising of them were a tenth of a takeover's time.
        config = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                           normalize_outbound_headers=False)
        self.h2 = h2.connection.H2Connection(config)
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
        })
        # The preface waits in h2's buffer: it leaves with the first write, once TLS chose h2.
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        # The socket connects under the outbound policy (each address checked, then the peer);
        # TLS starts on it only then.
        sock = await self.backend.connect_socket(self.host, self.port, timeout=self.connect_timeout)
        loop, transport = asyncio.get_running_loop(), None
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, _ = await loop.create_connection(lambda: _Protocol(self, self.ssl_context, self.host), sock=sock)
                alpn = await self.protocol.handshaken
        except BaseException:
            if transport is not None:
                transport.abort()
            else:
                sock.close()
            raise
        if alpn != "h2":
            self.closed = "the server chose HTTP/1.1"
            self.protocol.close()
            raise NotHTTP2("the server chose HTTP/1.1")
        self.transport = transport
        self._write()

    @property
    def usable(self):
        return self.closed is None and self.transport is not None

    async def get(self, path, headers, timeout):
        """Open a stream for GET ``path``; returns the Response once its headers arrived."""
        if not self.usable:
            raise StreamError(f"the connection is closed ({self.closed})")
        stream_id = self.h2.get_next_available_stream_id()
        response = self.responses[stream_id] = Response(self, stream_id)
        self.h2.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", self.authority.encode()),
                                         (b":path", path.encode()), *headers], end_stream=True)
        self._write()
        try:
            response.status = await asyncio.wait_for(asyncio.shield(response.headers), timeout)
        except BaseException:
            self.forget(stream_id, reset=True)
            raise
        return response

    def acknowledge(self, stream_id, flow):
        if flow and self.usable:
            self.h2.acknowledge_received_data(flow, stream_id)  # a closed stream: the connection's window only
            self._write()

    def forget(self, stream_id, reset):
        response = self.responses.pop(stream_id, None)
        if response is None or not self.usable:
            return
        if reset:
            try:
                self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.StreamClosedError:
                pass
        # What it received and never took no longer counts against the connection's window.
        unread = 0
        while not response.chunks.empty():
            item = response.chunks.get_nowait()
            if isinstance(item, tuple):
                unread += item[1]
        if unread:
            self.h2.acknowledge_received_data(unread, stream_id)
        self._write()

    def _write(self):
        data = self.h2.data_to_send()
        if data and self.closed is None and self.protocol is not None:
            self.protocol.write(data)

    def _received(self, data):
        if self.closed is not None or self.alpn != "h2":
            return
        try:
            for event in self.h2.receive_data(data):
                self._dispatch(event)
            self._write()  # (h2's own answers: settings acknowledged, pings)
        except Exception as exc:  # noqa: BLE001 - handed to every stream
            self._shut(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def _dispatch(self, event):
        if isinstance(event, h2.events.ConnectionTerminated):
            raise StreamError(f"the server ended the connection (GOAWAY {event.error_code!s})")
        response = self.responses.get(getattr(event, "stream_id", None))
        if response is None:
            if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            return
        if isinstance(event, h2.events.ResponseReceived):
            status = dict(event.headers).get(b":status", b"0")
            if not response.headers.done():
                response.headers.set_result(int(status))
        elif isinstance(event, h2.events.DataReceived):
            response.chunks.put_nowait((event.data, event.flow_controlled_length))
        elif isinstance(event, h2.events.StreamEnded):
            response.chunks.put_nowait(None)
        elif isinstance(event, h2.events.StreamReset):
            error = StreamError(f"the server reset the stream ({event.error_code!s})")
            if not response.headers.done():
                response.headers.set_exception(error)
            response.chunks.put_nowait(error)

    async def close(self, why="closed"):
        self._shut(why)

    def _shut(self, why):
        if self.closed is not None:
            return
        self.closed = why
        error = StreamError(f"the connection is closed ({why})")
        for response in self.responses.values():
            if not response.headers.done():
                response.headers.set_exception(error)
            response.chunks.put_nowait(error)
        if self.protocol is not None:
            self.protocol.close()
