"""Failed logins are throttled per user name and per client address, on the one login page
the portal and the admin share."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

LOGIN = "/login/"


@pytest.fixture
def local_user(db):
    return User.objects.create_user("operator", password="operator-password-1")


def attempt(username, password, address="10.0.0.1"):
    return Client(REMOTE_ADDR=address).post(LOGIN, {"username": username, "password": password})


def test_after_max_failures_even_the_right_password_is_refused_with_a_clear_message(local_user, settings, caplog):
    settings.PORTAL_LOGIN_MAX_FAILURES = 3
    settings.PORTAL_LOGIN_LOCKOUT_SECONDS = 300
    for _ in range(3):
        assert b"Invalid credentials" in attempt("operator", "wrong").content
    response = attempt("operator", "operator-password-1", address="10.0.0.2")
    assert response.status_code == 200
    assert b"Too many failed logins; try again in 5 minutes" in response.content
    assert "throttled" in caplog.text


def test_lock_is_per_user_name_case_insensitively(local_user, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 2
    attempt("operator", "wrong", "10.0.0.1")
    attempt("OPERATOR", "wrong", "10.0.0.2")
    assert b"too many failed logins" in attempt("operator", "operator-password-1", "10.0.0.3").content.lower()
    User.objects.create_user("someone", password="someone-password-1")
    assert attempt("someone", "someone-password-1", "10.0.0.4").status_code == 302


def test_lock_is_per_client_address(local_user, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 3
    for name in ("a", "b", "c"):  # spraying different names from one address
        attempt(name, "guess", "192.0.2.7")
    assert b"too many failed logins" in attempt("operator", "operator-password-1", "192.0.2.7").content.lower()
    assert attempt("operator", "operator-password-1", "192.0.2.8").status_code == 302


def test_success_resets_the_user_count(local_user, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 3
    attempt("operator", "wrong", "10.0.0.1")
    attempt("operator", "wrong", "10.0.0.2")
    assert attempt("operator", "operator-password-1", "10.0.0.3").status_code == 302
    attempt("operator", "wrong", "10.0.0.4")
    attempt("operator", "wrong", "10.0.0.5")
    assert attempt("operator", "operator-password-1", "10.0.0.6").status_code == 302


def test_lock_expires(local_user, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 1
    settings.PORTAL_LOGIN_LOCKOUT_SECONDS = 1
    attempt("operator", "wrong")
    assert b"try again in 1 minute" in attempt("operator", "operator-password-1").content
    import time

    time.sleep(1.2)
    assert attempt("operator", "operator-password-1").status_code == 302


def test_admin_login_is_the_same_throttled_page(local_user, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 1
    client = Client()
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=%2Fadmin%2F"
    response = client.get("/admin/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    attempt("operator", "wrong")
    assert b"too many failed logins" in attempt("operator", "operator-password-1").content.lower()
