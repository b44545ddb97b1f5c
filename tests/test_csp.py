"""The Content-Security-Policy: on every page, the admin and the API docs, and pages that need
nothing it refuses (no inline scripts or styles).  tests/test_browser.py checks the same in Chromium."""

import re

from django.test import Client

from portal.models import Operation

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)


def policy(response):
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in header.split("; ")}


def pages(world):
    op = Operation.objects.create(kind="provision", cluster=world.cluster, created_by=world.admin)
    return [
        "/", f"/clusters/{world.cluster.pk}/", "/clusters/import/", "/search/?q=web", "/projects/",
        f"/projects/{world.project.pk}/", f"/operations/{op.pk}/", "/account/tokens/",
        "/admin/", "/admin/clusters/cluster/", f"/admin/clusters/cluster/{world.cluster.pk}/change/",
        "/admin/clusters/cluster/import/", "/api/docs/",
    ]


def test_the_policy_is_strict(world):
    directives = policy(Client().get("/login/"))
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["style-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'self'"] and directives["form-action"] == ["'self'"]
    assert directives["connect-src"] == ["'self'", "ws://testserver"]  # the live updates' websocket


def test_every_page_carries_the_policy_and_needs_no_inline_code(world):
    anonymous, client = Client(), Client()
    client.force_login(world.admin)
    for url in ["/login/", *pages(world)]:
        response = (anonymous if url == "/login/" else client).get(url)
        assert response.status_code == 200, url
        assert "script-src 'self';" in response["Content-Security-Policy"] + ";", url
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), f"{url}: {INLINE_SCRIPT.search(html).group(0)}"
        assert "<style" not in html and " style=" not in html, url
        assert " onclick=" not in html and " onload=" not in html and "javascript:" not in html, url


def test_api_docs_load_their_script_from_a_file(world):
    client = Client()
    client.force_login(world.admin)
    html = client.get("/api/docs/").content.decode()
    assert '<script src="/api/docs/?script="' in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content


def test_the_websocket_origin_follows_the_scheme_and_host(world, settings):
    settings.ALLOWED_HOSTS = ["corral.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = Client().get("/login/", HTTP_HOST="corral.example.com", HTTP_X_FORWARDED_PROTO="https")
    assert policy(response)["connect-src"] == ["'self'", "wss://corral.example.com"]
    # a host Corral does not serve gets its 400, with the policy and without a websocket origin
    response = Client().get("/login/", HTTP_HOST="evil.example.net")
    assert response.status_code == 400 and policy(response)["connect-src"] == ["'self'"]


def test_the_browsable_api_may_keep_its_inline_styles_but_not_inline_scripts(world):
    client = Client()
    client.force_login(world.admin)
    directives = policy(client.get("/api/v1/clusters/", HTTP_ACCEPT="text/html"))
    assert directives["style-src"] == ["'self'", "'unsafe-inline'"] and directives["script-src"] == ["'self'"]
    assert policy(client.get("/api/v1/clusters/", HTTP_ACCEPT="application/json"))["style-src"] == ["'self'"]
