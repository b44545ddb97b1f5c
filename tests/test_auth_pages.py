"""The portal's API token pages and the user admin."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from portal.accounts.models import AccountSource, Profile
from portal.models import ApiToken, hash_token_secret


@pytest.fixture
def person(db):
    user = User.objects.create_user("pat", password="pat-password-1")
    client = Client()
    client.force_login(user)
    return user, client


def api(secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_token_page_creates_a_token_shown_once_and_stored_hashed(person):
    user, client = person
    response = client.post("/account/tokens/", {"description": "ci", "expires_in_days": "7", "read_only": "on"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    secret = response.context["secret"]
    assert secret.startswith("crl_") and secret.encode() in response.content
    token = ApiToken.objects.get(user=user)
    assert token.read_only and token.description == "ci"
    assert token.key_hash == hash_token_secret(secret.split(".", 1)[1]) and secret not in token.key_hash
    assert timedelta(days=6) < token.expires - timezone.now() <= timedelta(days=7)
    listing = client.get("/account/tokens/")
    assert token.key_id.encode() in listing.content and secret.encode() not in listing.content
    assert api(secret).get("/api/v1/me/").status_code == 200
    assert api(secret).post("/api/v1/tokens/", {"description": "x"}, format="json").status_code == 403  # read-only


def test_token_page_defaults_and_refuses_more_than_the_maximum(person, settings):
    user, client = person
    settings.API_TOKEN_MAX_DAYS = 90
    response = client.post("/account/tokens/", {"expires_in_days": "91"})
    assert response.status_code == 400 and b"between 1 and 90 days" in response.content
    client.post("/account/tokens/", {"description": "default"})
    token = ApiToken.objects.get(user=user)
    assert timedelta(days=29) < token.expires - timezone.now() <= timedelta(days=30)


def test_revoked_and_expired_tokens_get_401(person):
    user, client = person
    token, secret = ApiToken.issue(user)
    assert api(secret).get("/api/v1/me/").status_code == 200
    assert client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 302
    assert api(secret).get("/api/v1/me/").status_code == 401
    old, old_secret = ApiToken.issue(user)
    ApiToken.objects.filter(pk=old.pk).update(expires=timezone.now() - timedelta(seconds=1))
    assert api(old_secret).get("/api/v1/me/").status_code == 401
    page = client.get("/account/tokens/").content.decode()
    assert "revoked" in page and "expired" in page


def test_last_use_is_recorded(person):
    user, _ = person
    token, secret = ApiToken.issue(user)
    api(secret).get("/api/v1/me/")
    token.refresh_from_db()
    assert token.last_used is not None


def test_nobody_revokes_someone_elses_token(person):
    _, client = person
    other = User.objects.create_user("other", password="other-password-1")
    token, _ = ApiToken.issue(other)
    assert client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked is None


def test_token_pages_need_a_login(db):
    response = Client().get("/account/tokens/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_me_shows_local_source_for_local_accounts(person):
    user, client = person
    assert client.get("/api/v1/me/").json()["source"] == "local"


def test_user_admin_shows_source_groups_and_last_login(db):
    root = User.objects.create_superuser("root", "root@example.com", "root-password-1")
    directory_user = User.objects.create_user("dana", last_login=timezone.now())
    Profile.objects.create(user=directory_user, source=AccountSource.DIRECTORY, directory_dn="uid=dana,ou=people,dc=corral,dc=test")
    directory_user.groups.add(Group.objects.create(name="developers"), Group.objects.create(name="ops"))
    User.objects.create_user("loco")
    client = Client()
    client.force_login(root)
    page = client.get("/admin/auth/user/").content.decode()
    assert "Directory" in page and "Local" in page
    assert "developers, ops" in page
    assert "Last login" in page
    only_directory = client.get("/admin/auth/user/?source=directory").content.decode()
    assert "dana" in only_directory and "loco" not in only_directory
    only_local = client.get("/admin/auth/user/?source=local").content.decode()
    assert "loco" in only_local and "dana" not in only_local
    detail = client.get(f"/admin/auth/user/{directory_user.pk}/change/").content.decode()
    assert "uid=dana,ou=people,dc=corral,dc=test" in detail


def test_signed_in_non_staff_user_gets_403_from_the_admin_not_a_redirect_loop(person):
    _, client = person
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403
