"""A minimal HTTPS client for the sandbox's own API server (stdlib only, client-certificate auth).

The sandbox uses it for health checks and bootstrap objects (nodes, the admin service account),
where the full `kubernetes` client would add nothing but start-up time.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from pathlib import Path


class APIError(Exception):
    def __init__(self, status: int, body: dict | str):
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")


def client_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    if ca is None:
        # Controller-manager and scheduler serve self-signed health endpoints on loopback.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(ca))
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


class KubeAPI:
    """One keep-alive connection per thread to https://127.0.0.1:<port>."""

    def __init__(self, port: int, ca: Path, cert: Path, key: Path, timeout: float = 30):
        self.port = port
        self.timeout = timeout
        self.context = client_context(ca, cert, key)
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.context, timeout=self.timeout
            )
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {"Accept": "application/json", **(headers or {})}
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=payload, headers=all_headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        text = data.decode(errors="replace")
        try:
            parsed = json.loads(text) if text else {}
        except ValueError:
            parsed = text
        if response.status >= 400:
            raise APIError(response.status, parsed)
        return parsed

    def get(self, path: str):
        return self.request("GET", path)

    def create(self, path: str, body: dict, exist_ok: bool = False):
        try:
            return self.request("POST", path, body)
        except APIError as exc:
            if exist_ok and exc.status == 409:
                return None
            raise
