"""Failed logins are throttled per (user name, client address) pair, on the one login page the
portal and the admin share; counted in PostgreSQL (django-axes), atomically, without Redis."""

import socket
import threading
import time

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, RequestFactory

from portal.accounts.throttle import client_address

LOGIN = "/login/"
PASSWORD = "operator-password-1"


@pytest.fixture
def local_user(db):
    return User.objects.create_user("operator", password=PASSWORD)


def attempt(username, password, address="10.0.0.1", **headers):
    return Client(REMOTE_ADDR=address, **headers).post(LOGIN, {"username": username, "password": password})


def locked(response):
    return b"too many failed logins" in response.content.lower()


def test_after_max_failures_even_the_right_password_is_refused_with_a_clear_message(local_user, settings, caplog):
    settings.PORTAL_LOGIN_MAX_FAILURES = 3
    settings.PORTAL_LOGIN_LOCKOUT_SECONDS = 300
    for _ in range(3):
        assert b"Invalid credentials" in attempt("operator", "wrong").content
    response = attempt("operator", PASSWORD)
    assert response.status_code == 200
    assert b"Too many failed logins; try again in 5 minutes" in response.content
    assert "login refused for 'operator' from 10.0.0.1: throttled" in caplog.text


def test_the_name_is_counted_case_insensitively(local_user, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 2
    attempt("operator", "wrong")
    attempt(" OPERATOR", "wrong")
    assert locked(attempt("Operator", PASSWORD))


def test_failures_for_one_user_do_not_lock_other_users_from_the_same_address(local_user, settings):
    """Everyone behind one NAT or proxy shares an address: guessing at one name (or spraying
    many) must not lock out the others, the administrator least of all."""
    settings.PORTAL_LOGIN_MAX_FAILURES = 3
    User.objects.create_superuser("admin", "admin@example.com", "admin-password-1")
    for name in ("operator", "operator", "operator", "a", "b", "c"):
        attempt(name, "guess", "192.0.2.7")
    assert locked(attempt("operator", PASSWORD, "192.0.2.7"))
    assert attempt("admin", "admin-password-1", "192.0.2.7").status_code == 302


def test_failures_from_one_address_do_not_lock_the_user_from_another(local_user, settings):
    """Nobody can keep someone else's account locked from their own address."""
    settings.PORTAL_LOGIN_MAX_FAILURES = 3
    for _ in range(5):
        attempt("operator", "wrong", "198.51.100.66")
    assert locked(attempt("operator", PASSWORD, "198.51.100.66"))
    assert attempt("operator", PASSWORD, "10.0.0.8").status_code == 302


def test_success_resets_the_count(local_user, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 3
    attempt("operator", "wrong")
    attempt("operator", "wrong")
    assert attempt("operator", PASSWORD).status_code == 302
    attempt("operator", "wrong")
    attempt("operator", "wrong")
    assert attempt("operator", PASSWORD).status_code == 302


def test_lock_expires_and_refused_attempts_do_not_extend_it(local_user, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 1
    settings.PORTAL_LOGIN_LOCKOUT_SECONDS = 1
    attempt("operator", "wrong")
    time.sleep(0.5)
    assert b"try again in 1 minute" in attempt("operator", PASSWORD).content
    time.sleep(0.7)
    assert attempt("operator", PASSWORD).status_code == 302


def test_admin_login_is_the_same_throttled_page(local_user, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 1
    client = Client()
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=%2Fadmin%2F"
    response = client.get("/admin/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    attempt("operator", "wrong")
    assert locked(attempt("operator", PASSWORD))


def test_a_changed_user_agent_does_not_start_a_new_count(local_user, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 2
    attempt("operator", "wrong", HTTP_USER_AGENT="one")
    attempt("operator", "wrong", HTTP_USER_AGENT="two")
    assert locked(attempt("operator", PASSWORD, HTTP_USER_AGENT="three"))
    assert AccessAttempt.objects.count() == 1


# --- Concurrency: the attempt is taken before the password is checked --------------------------


class CountingBackend(ModelBackend):
    """ModelBackend that counts the passwords it is asked to check (an instrument, not a mock:
    the real password check still runs).  The pause widens the window a racing throttle leaves."""

    checked = []

    def authenticate(self, request, username=None, password=None, **kwargs):
        CountingBackend.checked.append(username)
        time.sleep(0.05)
        return super().authenticate(request, username=username, password=password, **kwargs)


@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_passwords_are_checked_at_most_max_failures_times(settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 5
    settings.AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", f"{__name__}.CountingBackend"]
    User.objects.create_user("operator", password=PASSWORD)
    CountingBackend.checked = []
    start = threading.Barrier(40)
    results = []

    def guess(n):
        try:
            start.wait()
            results.append(attempt("operator", f"wrong-{n}", "203.0.113.9"))
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 40 and all(r.status_code == 200 for r in results)
    assert len(CountingBackend.checked) == 5
    assert sum(b"Invalid credentials" in r.content for r in results) == 5
    assert sum(locked(r) for r in results) == 35
    assert AccessAttempt.objects.get().failures_since_start == 5


# --- The client address behind a reverse proxy ------------------------------------------------


def meta_address(remote, forwarded=None):
    headers = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_address(RequestFactory().post(LOGIN, **headers))


def test_without_trusted_proxies_the_address_is_the_peer(settings):
    settings.PORTAL_TRUSTED_PROXIES = []
    assert meta_address("198.51.100.4", "203.0.113.7") == "198.51.100.4"


def test_behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client(settings):
    settings.PORTAL_TRUSTED_PROXIES = ["10.9.0.0/16", "fd00::/8"]
    assert meta_address("10.9.0.5", "203.0.113.7") == "203.0.113.7"
    # Left of the client is whatever the client sent: never believed.
    assert meta_address("10.9.0.5", "1.2.3.4, 203.0.113.7, 10.9.0.3") == "203.0.113.7"
    assert meta_address("fd00::1", "2001:db8::9") == "2001:db8::9"
    assert meta_address("10.9.0.5", "not-an-address, 203.0.113.7") == "203.0.113.7"
    assert meta_address("10.9.0.5", "203.0.113.7, garbage") == "10.9.0.5"
    assert meta_address("10.9.0.5") == "10.9.0.5"
    assert meta_address("fe80::1%eth0") == "fe80::1"
    assert meta_address("::ffff:10.9.0.5", "203.0.113.7") == "203.0.113.7"


def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled(local_user, settings):
    settings.PORTAL_TRUSTED_PROXIES = ["10.9.0.0/16"]
    settings.PORTAL_LOGIN_MAX_FAILURES = 2
    for _ in range(2):
        attempt("operator", "wrong", "10.9.0.5", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert AccessAttempt.objects.get().ip_address == "203.0.113.7"
    assert locked(attempt("operator", PASSWORD, "10.9.0.6", HTTP_X_FORWARDED_FOR="203.0.113.7"))
    # Another client behind the same proxy is not locked out.
    assert attempt("operator", PASSWORD, "10.9.0.5", HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 302


def test_from_an_untrusted_peer_a_forged_forwarded_header_is_ignored(local_user, settings):
    settings.PORTAL_TRUSTED_PROXIES = ["10.9.0.0/16"]
    settings.PORTAL_LOGIN_MAX_FAILURES = 2
    for n in range(2):
        attempt("operator", "wrong", "198.51.100.9", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    assert AccessAttempt.objects.get().ip_address == "198.51.100.9"
    assert locked(attempt("operator", PASSWORD, "198.51.100.9", HTTP_X_FORWARDED_FOR="192.0.2.200"))


def test_trusted_proxies_setting_rejects_what_is_not_an_address():
    from tests.test_settings import run_check

    result = run_check(PORTAL_TRUSTED_PROXIES="10.0.0.0/8, proxy.example.com")
    assert result.returncode != 0
    assert "PORTAL_TRUSTED_PROXIES must list addresses or CIDRs" in result.stderr


# --- Redis down -------------------------------------------------------------------------------


@pytest.fixture
def redis_down(settings):
    """Cache and channel layer pointed at a port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = f"redis://127.0.0.1:{port}/0"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": dead}}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [dead]}}}
    from django.core.cache import cache
    from redis.exceptions import ConnectionError

    with pytest.raises(ConnectionError):
        cache.get("anything")
    return dead


def test_with_redis_down_the_local_admin_logs_in_and_nobody_gets_a_server_error(local_user, settings, redis_down):
    settings.PORTAL_LOGIN_MAX_FAILURES = 2
    User.objects.create_superuser("admin", "admin@example.com", "admin-password-1")
    assert b"Invalid credentials" in attempt("operator", "wrong").content
    assert b"Invalid credentials" in attempt("nobody", "wrong").content
    attempt("operator", "wrong")
    assert locked(attempt("operator", PASSWORD))
    admin = Client(REMOTE_ADDR="10.0.0.1")
    response = admin.post(LOGIN, {"username": "admin", "password": "admin-password-1", "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert admin.get("/admin/").status_code == 200
    assert admin.get("/admin/auth/user/").status_code == 200
