"""Limits before work: an oversized body is refused before it is buffered, for anonymous callers too,
by the real web server (daphne, as `make run` and the image start it), not only by the test client
(which hands Django the whole body at once)."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from portal.limits import BodyLimitMiddleware

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 2 * 1024 * 1024
MiB = 1024 * 1024


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def daphne():
    port = _free_port()
    env = {**os.environ, "PORTAL_MAX_REQUEST_BYTES": str(LIMIT), "DJANGO_SETTINGS_MODULE": "portal.settings"}
    env.pop("PORTAL_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"daphne exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("daphne did not start listening within 60 s")
    yield port, psutil.Process(proc.pid)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class PeakRss:
    """The highest resident memory of a process while the block runs, sampled every 20 ms."""

    def __init__(self, process):
        self.process, self.peak, self._stop = process, 0, threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self):
        self.before = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth(self):
        return self.peak - self.before


def _headers(port, extra):
    lines = ["POST /api/v1/projects/ HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json", *extra, "", ""]
    return "\r\n".join(lines).encode()


def _read_response(sock):
    sock.settimeout(10)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def _stream(port, total, declared_length):
    """POST ``total`` bytes in 1 MiB pieces (chunked unless a length is declared) until the server
    closes the connection; returns (bytes sent, response bytes)."""
    extra = [f"Content-Length: {declared_length}"] if declared_length else ["Transfer-Encoding: chunked"]
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent = 0
    piece = b"x" * MiB
    try:
        sock.sendall(_headers(port, extra))
        while sent < total:
            sock.sendall(piece if declared_length else b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    response = _read_response(sock)
    sock.close()
    return sent, response


def test_declared_oversized_body_is_refused_from_its_headers(daphne):
    port, process = daphne
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(_headers(port, [f"Content-Length: {400 * MiB}"]))  # and no body at all
    response = _read_response(sock)
    sock.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), response[:200]
    assert json.loads(body) == {"detail": f"request body too large (the limit is {LIMIT} bytes)"}


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_streamed_400_mb_body_is_cut_off_without_growing_the_server(daphne, declared):
    port, process = daphne
    with PeakRss(process) as rss:
        sent, response = _stream(port, 400 * MiB, 400 * MiB if declared else None)
    print(f"daphne rss before {rss.before / MiB:.0f} MiB, peak growth {rss.growth / MiB:.1f} MiB, client sent {sent / MiB:.0f} MiB")
    # The server stopped reading early: what got through is the limit plus socket buffers.
    assert sent < 64 * MiB
    assert rss.growth < 30 * MiB
    if response:  # the client may see a reset before the answer; when it reads one, it is the 413
        assert response.startswith(b"HTTP/1.1 413"), response[:200]


def test_a_body_under_the_limit_still_reaches_the_application(daphne):
    port, _ = daphne
    sent, response = _stream(port, 1 * MiB, 1 * MiB)
    assert sent == MiB
    status = response.split(b" ", 2)[1]
    assert status != b"413" and status.startswith(b"4"), response[:300]  # anonymous: refused by the API, not by size


async def _run(app, chunks, headers=()):
    """Drive an ASGI app with a streamed body; returns (messages sent, chunks the app read)."""
    sent, read = [], 0
    queue = list(chunks)

    async def receive():
        nonlocal read
        if not queue:
            return {"type": "http.disconnect"}
        read += 1
        body = queue.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(queue)}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "method": "POST", "path": "/", "headers": list(headers)}, receive, send)
    return sent, read


async def _greedy_app(scope, receive, send):
    """An application that reads the whole body, as Django does, then answers 200."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    if message["type"] == "http.disconnect":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_middleware_stops_reading_a_streamed_body_at_the_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    sent, read = await _run(BodyLimitMiddleware(_greedy_app), [b"x" * MiB] * 400)
    assert read == 3  # 3 MiB passed the 2 MiB limit; the other 397 chunks were never read
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["detail"].startswith("request body too large")


async def test_middleware_refuses_by_content_length_without_reading(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    sent, read = await _run(BodyLimitMiddleware(_greedy_app), [b"x"], headers=[(b"content-length", str(400 * MiB).encode())])
    assert read == 0
    assert sent[0]["status"] == 413


async def test_middleware_passes_bodies_under_the_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    sent, read = await _run(BodyLimitMiddleware(_greedy_app), [b"x" * MiB, b"x" * 1000])
    assert read == 2
    assert sent[0]["status"] == 200
