"""Real receivers for notifier tests: an HTTP server recording what it is sent, and an SMTP server
(aiosmtpd) with STARTTLS and authentication, both on loopback ports."""

import datetime
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class HTTPReceiver:
    """Records every POST (path, headers, raw body, JSON); answers ``status`` (settable)."""

    def __init__(self, status=200):
        self.status = status
        self.requests = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.arrived:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                              "json": json.loads(body) if body else None, "at": time.monotonic()})
                    receiver.arrived.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status": "success"}' if receiver.status < 300 else b'{"error": "refused"}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(self.requests)} requests arrived, {count} expected")
                self.arrived.wait(remaining)
        return self.requests

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed_certificate():
    """(cert PEM, key PEM) for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corral-test-smtp")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return cert_pem, key_pem


class SMTPReceiver:
    """aiosmtpd with STARTTLS required and AUTH (only after TLS) for ``username``/``password``."""

    def __init__(self, username="corral", password="smtp-secret-1"):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages = []
        self.arrived = threading.Condition()
        self.cert_pem, key_pem = self_signed_certificate()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as cert_file, tempfile.NamedTemporaryFile("w", suffix=".pem") as key_file:
            cert_file.write(self.cert_pem)
            key_file.write(key_pem)
            cert_file.flush()
            key_file.flush()
            context.load_cert_chain(cert_file.name, key_file.name)
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with receiver.arrived:
                    receiver.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                              "message": message_from_bytes(envelope.content, policy=default_policy),
                                              "tls": session.ssl is not None})
                    receiver.arrived.notify_all()
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == username.encode() and auth_data.password == password.encode()
            return AuthResult(success=ok, handled=False)

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, tls_context=context, require_starttls=True,
                                     authenticator=authenticate, auth_require_tls=True)
        self.controller.start()

    def wait_for(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(self.messages)} messages arrived, {count} expected")
                self.arrived.wait(remaining)
        return self.messages

    def close(self):
        self.controller.stop()
