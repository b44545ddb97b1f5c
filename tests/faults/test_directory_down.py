"""The directory down (slapd stopped) or hung (slapd paused: it accepts connections and never
answers): directory users are told "Directory unavailable" quickly, and a local break-glass
administrator still logs in, at once.  A real OpenLDAP (tests/ldap_fixtures.py)."""

import time

import pytest
from django.contrib.auth.models import User

from tests.test_auth_ldap_login import login

pytestmark = pytest.mark.ldap


def test_directory_down_fails_fast_with_directory_unavailable_and_local_admin_still_logs_in(directory, caplog):
    User.objects.create_superuser("breakglass", "bg@example.com", "breakglass-password-1")
    directory.stop()
    try:
        started = time.monotonic()
        _, response = login("alice", "alice-password")
        assert time.monotonic() - started < 3
        assert b"Directory unavailable" in response.content
        assert "directory unavailable" in caplog.text
        client, response = login("breakglass", "breakglass-password-1")
        assert response.status_code == 302 and client.get("/admin/").status_code == 200
    finally:
        directory.start()


def test_hung_directory_times_out_and_local_admin_is_not_delayed(directory, settings):
    User.objects.create_superuser("breakglass", "bg@example.com", "breakglass-password-1")
    directory.pause()  # accepts connections, never answers
    try:
        started = time.monotonic()
        _, response = login("alice", "alice-password")
        elapsed = time.monotonic() - started
        assert b"Directory unavailable" in response.content
        assert elapsed < 3 * settings.PORTAL_LDAP_TIMEOUT_SECONDS + 1  # each LDAP step is bounded
        started = time.monotonic()
        assert login("breakglass", "breakglass-password-1")[1].status_code == 302
        assert time.monotonic() - started < 1
    finally:
        directory.resume()
    assert login("alice", "alice-password")[1].status_code == 302
