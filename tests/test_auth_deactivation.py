"""An administrator's deactivation in Corral holds until an administrator lifts it, whatever the
directory says; the directory refresh's own deactivation is lifted by a later good login."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from portal.accounts.backends import DirectoryBackend, refresh_user
from portal.accounts.models import AccountSource, Deactivation, source_of
from portal.accounts.tasks import refresh_directory_users

pytestmark = pytest.mark.ldap


def login(username, password):
    client = Client(REMOTE_ADDR="10.1.0.1")
    return client, client.post("/login/", {"username": username, "password": password})


@pytest.fixture
def admin_client(db):
    User.objects.create_superuser("breakglass", "bg@example.com", "breakglass-password-1")
    client, response = login("breakglass", "breakglass-password-1")
    assert response.status_code == 302
    return client


def set_active(admin_client, user, active):
    """Tick or untick "active" on the admin's user page, as an administrator would."""
    user.refresh_from_db()
    data = {
        "username": user.username, "first_name": user.first_name, "last_name": user.last_name, "email": user.email,
        "is_staff": "on" if user.is_staff else "", "is_superuser": "on" if user.is_superuser else "",
        "groups": [str(pk) for pk in user.groups.values_list("pk", flat=True)],
        "profile-TOTAL_FORMS": "1" if hasattr(user, "profile") else "0",
        "profile-INITIAL_FORMS": "1" if hasattr(user, "profile") else "0",
        "profile-MIN_NUM_FORMS": "0", "profile-MAX_NUM_FORMS": "1",
    }
    if hasattr(user, "profile"):
        data.update({"profile-0-id": str(user.profile.pk), "profile-0-user": str(user.pk)})
    if active:
        data["is_active"] = "on"
    response = admin_client.post(f"/admin/auth/user/{user.pk}/change/", {k: v for k, v in data.items() if v != ""})
    assert response.status_code == 302, response.content.decode()[:3000]
    user.refresh_from_db()
    user.profile.refresh_from_db()
    return user


def test_deactivated_by_an_administrator_stays_out_despite_a_valid_directory_password(directory, admin_client, caplog):
    login("bob", "bob-password")
    bob = set_active(admin_client, User.objects.get(username="bob"), False)
    assert bob.profile.deactivated_by == Deactivation.ADMINISTRATOR
    assert bob.profile.deactivated_reason == "deactivated by breakglass in Corral"

    _, response = login("bob", "bob-password")

    assert b"Invalid credentials" in response.content
    assert "deactivated by an administrator in Corral" in caplog.text
    bob.refresh_from_db()
    assert not bob.is_active
    # The admin shows who deactivated the account, and filters by it.
    page = admin_client.get(f"/admin/auth/user/{bob.pk}/change/").content.decode()
    assert "Deactivated by" in page and "Administrator" in page
    listing = admin_client.get("/admin/auth/user/?profile__deactivated_by=administrator").content.decode()
    breakglass = User.objects.get(username="breakglass")
    assert f"/admin/auth/user/{bob.pk}/change/" in listing and f"/admin/auth/user/{breakglass.pk}/change/" not in listing


def test_the_directory_refresh_does_not_lift_an_administrators_deactivation(directory, admin_client):
    login("bob", "bob-password")
    stale = User.objects.get(username="bob")  # as the refresh loaded it, before the administrator acted
    set_active(admin_client, User.objects.get(username="bob"), False)

    refresh_directory_users.delay().get()
    assert refresh_user(DirectoryBackend(), stale) == ""  # the directory still says yes, and saves its copy

    bob = User.objects.get(username="bob")
    assert not bob.is_active
    assert bob.profile.deactivated_by == Deactivation.ADMINISTRATOR


def test_an_administrator_reactivating_lifts_it(directory, admin_client):
    login("bob", "bob-password")
    bob = set_active(admin_client, User.objects.get(username="bob"), False)
    bob = set_active(admin_client, bob, True)
    assert bob.is_active and bob.profile.deactivated_by == "" and bob.profile.deactivated_reason == ""
    assert login("bob", "bob-password")[1].status_code == 302


def test_a_directory_deactivation_is_lifted_by_the_directory(changed_directory):
    login("bob", "bob-password")
    changed_directory.lock_user("bob")
    refresh_directory_users.delay().get()
    bob = User.objects.get(username="bob")
    assert not bob.is_active and bob.profile.deactivated_by == Deactivation.DIRECTORY
    changed_directory.unlock_user("bob")
    assert login("bob", "bob-password")[1].status_code == 302
    bob = User.objects.get(username="bob")
    assert bob.is_active and bob.profile.deactivated_by == "" and bob.profile.deactivated_reason == ""


def test_the_refresh_does_not_overwrite_an_administrators_deactivation_with_its_own(changed_directory, admin_client):
    login("bob", "bob-password")
    set_active(admin_client, User.objects.get(username="bob"), False)
    changed_directory.lock_user("bob")
    from portal.accounts.tasks import deactivate

    assert deactivate(User.objects.get(username="bob"), "locked in the directory") is False
    assert User.objects.get(username="bob").profile.deactivated_by == Deactivation.ADMINISTRATOR


def test_a_local_account_deactivated_by_an_administrator_is_marked_and_stays_local(directory, admin_client):
    operator = User.objects.create_user("operator", password="operator-password-1")
    operator.is_active = False
    operator.save()
    operator = User.objects.select_related("profile").get(pk=operator.pk)
    assert operator.profile.deactivated_by == Deactivation.ADMINISTRATOR
    assert source_of(operator) == AccountSource.LOCAL
    assert login("operator", "operator-password-1")[1].status_code == 200
