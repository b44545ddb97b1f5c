"""The periodic refresh: groups follow the directory; users gone or disabled there are
deactivated and lose their API tokens; a directory outage deactivates nobody."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from portal.accounts.tasks import refresh_directory_users
from portal.models import ApiToken

pytestmark = pytest.mark.ldap


def sign_in(username):
    client = Client()
    assert client.post("/login/", {"username": username, "password": f"{username}-password"}).status_code == 302
    return client


def bearer(user):
    _, secret = ApiToken.issue(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_refresh_updates_groups_and_admin_flag_without_a_login(changed_directory):
    sign_in("alice")
    changed_directory.remove_from_group("alice", "developers")
    changed_directory.remove_from_group("alice", "corral-admins")
    result = refresh_directory_users.delay().get()
    assert result == {"refreshed": 1, "deactivated": 0}
    alice = User.objects.get(username="alice")
    assert alice.is_active and not alice.is_superuser
    assert set(alice.groups.values_list("name", flat=True)) == {"corral-users"}
    assert alice.profile.directory_refreshed is not None


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d.delete_user("bob"), "no longer in the directory"),
        (lambda d: d.lock_user("bob"), "locked in the directory"),
        (lambda d: d.remove_from_group("bob", "corral-users"), "no longer in the required group"),
    ],
)
def test_user_gone_or_disabled_is_deactivated_and_tokens_revoked(changed_directory, change, reason):
    browser = sign_in("bob")
    sign_in("frank")
    bob = User.objects.get(username="bob")
    api = bearer(bob)
    assert api.get("/api/v1/me/").status_code == 200
    change(changed_directory)

    result = refresh_directory_users.delay().get()

    assert result == {"refreshed": 1, "deactivated": 1}
    bob.refresh_from_db()
    assert not bob.is_active
    assert reason in bob.profile.deactivated_reason
    assert not ApiToken.objects.filter(user=bob, revoked__isnull=True).exists()
    assert api.get("/api/v1/me/").status_code == 401
    assert browser.get("/api/v1/me/").status_code in (401, 403)  # the session is dead too
    assert User.objects.get(username="frank").is_active


def test_reenabled_user_is_active_again_at_the_next_login(changed_directory):
    sign_in("bob")
    changed_directory.lock_user("bob")
    refresh_directory_users.delay().get()
    assert not User.objects.get(username="bob").is_active
    changed_directory.unlock_user("bob")
    sign_in("bob")
    assert User.objects.get(username="bob").is_active


def test_directory_outage_deactivates_nobody(directory):
    sign_in("bob")
    directory.stop()
    try:
        result = refresh_directory_users.delay().get()
    finally:
        directory.start()
    assert "directory unavailable" in result["error"]
    assert result["deactivated"] == 0
    assert User.objects.get(username="bob").is_active


def test_local_accounts_are_left_alone(directory):
    local = User.objects.create_user("localop", password="localop-password-1")
    sign_in("frank")
    assert refresh_directory_users.delay().get() == {"refreshed": 1, "deactivated": 0}
    local.refresh_from_db()
    assert local.is_active


def test_refresh_is_skipped_when_directory_sign_in_is_off(db):
    assert "skipped" in refresh_directory_users.delay().get()


def test_refresh_task_is_scheduled(settings):
    assert settings.PERIODIC_TASKS["accounts: refresh directory users"]["task"] == "portal.accounts.tasks.refresh_directory_users"
