"""The Kubernetes API proxy at its doors, on the real ASGI server (daphne) with a recording
stand-in for the API server (a real HTTP server on loopback that notes every request reaching it):
who is let through, what is forwarded, and that nothing is forwarded for a refusal."""

import http.server
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.utils import timezone

from clusters.models import Cluster
from portal.models import ApiToken, AuditEvent
from tests.conftest import World
from tests.live_server import daphne, free_port

pytestmark = pytest.mark.django_db(transaction=True)
MiB = 1024 * 1024


class Recorder(http.server.ThreadingHTTPServer):
    """An API server stand-in: answers every request with a small JSON and remembers it."""

    daemon_threads = True

    def __init__(self):
        self.seen, self.hung_up = [], 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(handler):
                length = int(handler.headers.get("Content-Length") or 0)
                body = handler.rfile.read(length) if length else b""
                self.seen.append({"method": handler.command, "path": handler.path, "headers": handler.headers, "body_length": len(body)})
                if "watch=1" in handler.path:  # a watch: events until the proxy hangs up (HTTP/1.0, no length)
                    handler.send_response(200)
                    handler.send_header("Content-Type", "application/json")
                    handler.end_headers()
                    try:
                        for i in range(300):
                            handler.wfile.write(b'{"type":"ADDED","object":{"n":%d}}\n' % i)
                            handler.wfile.flush()
                            time.sleep(0.1)
                    except OSError:
                        self.hung_up += 1
                    return
                status = 201 if handler.command == "POST" else 200
                out = json.dumps({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x"}}).encode()
                handler.send_response(status)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(out)))
                handler.end_headers()
                handler.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def setup(recorder):
    world = World()
    for cluster in (world.cluster, world.other_cluster):
        cluster.credentials = {"server": recorder.url, "token": "cluster-secret"}
        cluster.save()
    with daphne(PORTAL_PROXY_TOKEN_RECHECK_SECONDS="1") as (url, _):
        yield world, url


def call(url, path, token=None, method="GET", body=None, headers=None):
    request = urllib.request.Request(url + path, method=method, data=body, headers=headers or {})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def token(user, **extra):
    return ApiToken.issue(user, **extra)[1]


def test_member_is_forwarded_as_themselves_with_corrals_credentials(setup, recorder):
    world, url = setup
    code, body, _ = call(url, f"/k8s/clusters/{world.cluster.pk}/api/v1/namespaces/web-prod/pods?limit=5", token(world.member))
    assert code == 200, body
    [seen] = recorder.seen
    assert seen["path"] == "/api/v1/namespaces/web-prod/pods?limit=5"
    assert seen["headers"]["Authorization"] == "Bearer cluster-secret"  # Corral's, never the caller's
    assert seen["headers"]["Impersonate-User"] == "corral:user:member"


def test_another_tenant_gets_404_and_nothing_is_forwarded(setup, recorder):
    world, url = setup
    for who in (world.stranger, world.nobody):
        code, body, _ = call(url, f"/k8s/clusters/{world.cluster.pk}/api/v1/pods", token(who))
        assert code == 404, body
        assert json.loads(body)["reason"] == "NotFound"
    code, _, _ = call(url, "/k8s/clusters/999999/api/v1/pods", token(world.admin))
    assert code == 404
    code, _, _ = call(url, f"/k8s/clusters/{world.cluster.pk}/api/v1/namespaces/x/pods", token(world.stranger), method="POST", body=b"{}")
    assert code == 404
    assert recorder.seen == []


def test_no_token_bad_token_revoked_or_kubeconfig_less_answers_are_401(setup, recorder):
    world, url = setup
    path = f"/k8s/clusters/{world.cluster.pk}/api/v1/pods"
    assert call(url, path)[0] == 401
    assert call(url, path, "crl_nothing.here")[0] == 401
    row, secret = ApiToken.issue(world.member)
    ApiToken.objects.filter(pk=row.pk).update(revoked=timezone.now())
    assert call(url, path, secret)[0] == 401
    row, secret = ApiToken.issue(world.member)
    ApiToken.objects.filter(pk=row.pk).update(expires=timezone.now())
    assert call(url, path, secret)[0] == 401
    assert recorder.seen == []


def test_impersonation_headers_from_the_client_are_refused(setup, recorder):
    world, url = setup
    path = f"/k8s/clusters/{world.cluster.pk}/api/v1/pods"
    for header in ("Impersonate-User", "Impersonate-Group", "Impersonate-Uid", "Impersonate-Extra-Scopes", "X-Remote-User"):
        code, body, _ = call(url, path, token(world.member), headers={header: "system:admin"})
        assert code == 403, header
        assert header.lower() in json.loads(body)["message"]
    assert recorder.seen == []


def test_read_only_token_cannot_write_through_the_proxy(setup, recorder):
    world, url = setup
    code, _, _ = call(url, f"/k8s/clusters/{world.cluster.pk}/api/v1/namespaces/web-prod/pods", token(world.member, read_only=True), method="POST", body=b"{}")
    assert code == 403 and recorder.seen == []


def test_unavailable_or_unreachable_cluster_is_503_with_the_reason(setup, recorder):
    world, url = setup
    Cluster.objects.filter(pk=world.cluster.pk).update(state="unavailable", last_error="no answer for 20 s")
    code, body, _ = call(url, f"/k8s/clusters/{world.cluster.pk}/api/v1/pods", token(world.owner))
    assert code == 503 and "unavailable: no answer for 20 s" in json.loads(body)["message"]
    Cluster.objects.filter(pk=world.cluster.pk).update(state="active")
    cluster = Cluster.objects.get(pk=world.cluster.pk)
    cluster.credentials = {"server": f"https://127.0.0.1:{free_port()}", "token": "x"}
    cluster.save()
    started = time.monotonic()
    code, body, _ = call(url, f"/k8s/clusters/{world.cluster.pk}/api/v1/pods", token(world.owner))
    assert code == 503 and "cannot connect" in json.loads(body)["message"]
    assert time.monotonic() - started < 10  # refused at once, not after a hang (a bound, not a timing)
    cluster.credentials = {"server": recorder.url, "ca_data": "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n", "token": "x"}
    cluster.save()
    code, body, _ = call(url, f"/k8s/clusters/{world.cluster.pk}/api/v1/pods", token(world.owner))
    assert code == 503 and "stored credentials cannot be used" in json.loads(body)["message"]


def test_outbound_policy_applies_to_the_proxy(recorder, settings):
    world = World()
    world.cluster.credentials = {"server": recorder.url, "token": "x"}
    world.cluster.save()
    with daphne(PORTAL_CLUSTER_DENIED_NETWORKS="127.0.0.0/8") as (url, _):
        code, body, _ = call(url, f"/k8s/clusters/{world.cluster.pk}/api/v1/pods", token(world.owner))
    assert code == 503 and "not allowed" in json.loads(body)["message"]
    assert recorder.seen == []


def test_writes_are_audited_without_secrets(setup, recorder):
    world, url = setup
    base = f"/k8s/clusters/{world.cluster.pk}"
    code, _, _ = call(url, f"{base}/apis/apps/v1/namespaces/web-prod/deployments", token(world.member), method="POST", body=b'{"kind":"Deployment"}')
    assert code == 201
    call(url, f"{base}/api/v1/namespaces/web-prod/secrets", token(world.member), method="POST", body=b'{"data":{"password":"aHVudGVyMg=="}}')
    call(url, f"{base}/api/v1/namespaces/web-prod/pods/x", token(world.member), method="DELETE")
    call(url, f"{base}/api/v1/namespaces/web-prod/pods", token(world.member))  # a read: not audited
    events = list(AuditEvent.objects.filter(source="kube-proxy").order_by("pk"))
    assert [(e.username, e.action, e.object_type, e.after["namespace"], e.after["code"]) for e in events] == [
        ("member", "create", "kubernetes.deployments.apps", "web-prod", 201),
        ("member", "create", "kubernetes.secrets", "web-prod", 201),
        ("member", "delete", "kubernetes.pods", "web-prod", 200),
    ]
    assert events[2].after["name"] == "x"
    assert all("body" not in e.after for e in events)  # bodies only by setting, and never secrets'
    assert "aHVudGVyMg" not in json.dumps([e.after for e in events])


def test_the_proxy_takes_the_api_servers_3_mib_not_the_apis_2_mib(setup, recorder):
    world, url = setup
    path = f"/k8s/clusters/{world.cluster.pk}/api/v1/namespaces/web-prod/configmaps"
    code, _, _ = call(url, path, token(world.member), method="POST", body=b"x" * int(2.5 * MiB))
    assert code == 201 and recorder.seen[-1]["body_length"] == int(2.5 * MiB)
    # Refused from the declared length, before the body is sent (a client still sending would see a reset).
    assert _declared(url, path, 3 * MiB + 1).startswith(b"HTTP/1.1 413")
    assert str(3 * MiB).encode() in _declared(url, path, 3 * MiB + 1)
    assert len(recorder.seen) == 1
    assert _declared(url, "/api/v1/projects/", int(2.5 * MiB)).startswith(b"HTTP/1.1 413")  # the rest of Corral keeps 2 MiB


def _declared(url, path, length):
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_dropped_client_does_not_pin_an_upstream_connection(setup):
    """A client that sends headers and vanishes (or never reads) leaves no connection behind."""
    world, url = setup
    port = int(url.rsplit(":", 1)[1])
    secret = token(world.member)
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(f"POST /k8s/clusters/{world.cluster.pk}/api/v1/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
                     f"Content-Length: 1000\r\n\r\nabc".encode())
        sock.close()
    code, _, _ = call(url, f"/k8s/clusters/{world.cluster.pk}/version", token(world.member))
    assert code == 200  # the server still answers at once


def _session(url, user):
    """A signed-in browser's cookies (session and CSRF) on the live server."""
    from django.middleware.csrf import _get_new_csrf_string
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value, _get_new_csrf_string()  # the CSRF cookie a page would hold


def test_portal_pages_use_the_proxy_with_their_session_and_csrf(setup, recorder):
    world, url = setup
    session, csrf = _session(url, world.member)
    cookie = f"sessionid={session}; csrftoken={csrf}"
    path = f"/k8s/clusters/{world.cluster.pk}/api/v1/namespaces/web-prod/pods/a"
    assert call(url, path, headers={"Cookie": cookie})[0] == 200
    assert call(url, path, method="PUT", body=b"{}", headers={"Cookie": cookie})[0] == 403  # no CSRF token
    assert call(url, path, method="PUT", body=b"{}", headers={"Cookie": cookie, "X-CSRFToken": csrf, "Origin": "https://evil.example"})[0] == 403
    assert call(url, path, method="PUT", body=b"{}", headers={"Cookie": cookie, "X-CSRFToken": csrf})[0] == 200
    assert [s["method"] for s in recorder.seen] == ["GET", "PUT"]
    assert recorder.seen[-1]["headers"]["Impersonate-User"] == "corral:user:member"
    assert "Cookie" not in recorder.seen[-1]["headers"]  # the session never reaches the cluster
    stranger_session, _ = _session(url, world.stranger)
    assert call(url, path, headers={"Cookie": f"sessionid={stranger_session}"})[0] == 404


def test_kubeconfig_tokens_work_only_on_the_proxy(setup, recorder):
    world, url = setup
    _, secret = ApiToken.issue(world.member, kind=ApiToken.Kind.KUBECONFIG)
    assert call(url, f"/k8s/clusters/{world.cluster.pk}/version", secret)[0] == 200
    code, body, _ = call(url, "/api/v1/me/", secret)
    assert code == 401 and b"kubeconfig" in body


def test_paths_go_on_as_encoded_and_dot_segments_are_refused(setup, recorder):
    world, url = setup
    base = f"/k8s/clusters/{world.cluster.pk}"
    assert call(url, f"{base}/api/v1/namespaces/web-prod/configmaps/a%3Fb?limit=1", token(world.member))[0] == 200
    assert recorder.seen[-1]["path"] == "/api/v1/namespaces/web-prod/configmaps/a%3Fb?limit=1"
    for sneaky in ("/api/../../other", "/api/%2e%2e/x", "/./api"):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET {base}{sneaky} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(world.member)}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400"), (sneaky, answer[:200])
    assert len(recorder.seen) == 1


def _open_stream(url, path, headers):
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first[:300]
    return sock


def _until_closed(sock, timeout=20):
    """Read until the server ends the stream (the last chunk, or closing); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            return
        data += chunk
        if data.endswith(b"0\r\n\r\n"):
            return
    raise AssertionError("the stream was never closed")


def test_streams_close_when_their_token_is_revoked_or_their_session_ends(setup, recorder):
    from django.contrib.sessions.models import Session

    world, url = setup
    path = f"/k8s/clusters/{world.cluster.pk}/api/v1/namespaces/web-prod/pods?watch=1"
    row, secret = ApiToken.issue(world.member)
    by_token = _open_stream(url, path, f"Authorization: Bearer {secret}\r\n")
    session, _ = _session(url, world.member)
    by_session = _open_stream(url, path, f"Cookie: sessionid={session}\r\n")
    ApiToken.objects.filter(pk=row.pk).update(revoked=timezone.now())
    _until_closed(by_token)  # within PORTAL_PROXY_TOKEN_RECHECK_SECONDS (1 s here)
    Session.objects.filter(session_key=session).delete()  # signed out
    _until_closed(by_session)
    by_token.close()
    by_session.close()
    deadline = time.monotonic() + 10
    while recorder.hung_up < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert recorder.hung_up == 2  # and the proxy let go of the cluster's side too
