"""Directory sign-in against a real OpenLDAP (tests/ldap_fixtures.py): the portal, the admin and
the API share one session; refusals look alike to the user and differ in the log."""

import logging

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory

from portal.models import GlobalRole, GlobalRoleBinding

pytestmark = pytest.mark.ldap

LOGIN = "/login/"
GENERIC = b"Invalid credentials."


def login(username, password, address="10.1.0.1"):
    client = Client(REMOTE_ADDR=address)
    response = client.post(LOGIN, {"username": username, "password": password})
    return client, response


def test_directory_user_logs_in_once_for_portal_admin_and_api(directory):
    client, response = login("alice", "alice-password")
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert client.get("/admin/").status_code == 200  # corral-admins: administrator
    me = client.get("/api/v1/me/").json()  # the session serves the browsable API too
    assert me["username"] == "alice" and me["email"] == "alice@corral.test"
    assert me["source"] == "directory"
    assert me["is_administrator"] is True
    assert {"developers", "corral-admins", "corral-users"} <= set(me["groups"])
    assert me["roles"]["global"][0] == {"role": "administrator", "via": "superuser"}
    user = User.objects.get(username="alice")
    assert (user.first_name, user.last_name) == ("Alice", "Archer")
    assert user.profile.directory_dn == directory.user_dn("alice")
    assert not user.has_usable_password()


def test_logout_ends_the_session_everywhere(directory):
    client, _ = login("alice", "alice-password")
    assert client.post("/logout/").status_code == 302
    assert client.get("/api/v1/me/").status_code in (401, 403)
    assert client.get("/admin/").status_code == 302
    assert client.get("/").status_code == 302


def test_nested_membership_of_the_required_group_lets_carol_in(directory):
    client, response = login("carol", "carol-password")
    assert response.status_code == 302
    me = client.get("/api/v1/me/").json()
    assert {"ops", "platform", "corral-users"} <= set(me["groups"])
    assert me["is_administrator"] is False


def test_non_admin_directory_user_may_not_use_the_admin(directory):
    client, _ = login("bob", "bob-password")
    assert client.get("/admin/").status_code in (302, 403)
    assert not User.objects.get(username="bob").is_staff


@pytest.mark.parametrize(
    "username, password, reason",
    [
        ("alice", "wrong-password", "user DN/password rejected"),
        ("nobody-here", "whatever", "failed to map the username to a DN"),
        ("dave", "dave-password", "user DN/password rejected"),  # ppolicy-locked
        ("outsider", "outsider-password", "does not satisfy AUTH_LDAP_REQUIRE_GROUP"),
    ],
)
def test_every_refusal_shows_the_same_generic_message_and_logs_the_reason(changed_directory, caplog, username, password, reason):
    changed_directory.add_user("outsider", groups=["developers"])  # not in corral-users
    caplog.set_level(logging.WARNING, logger="portal.accounts")
    _, response = login(username, password)
    assert response.status_code == 200
    assert GENERIC in response.content
    assert response.content.count(b'role="alert"') == 1
    assert b'role="alert">Invalid credentials.</p>' in response.content
    assert reason in caplog.text and repr(username) in caplog.text
    assert not User.objects.filter(username=username, is_active=True).exists()


def test_disabled_user_unlocked_in_the_directory_may_log_in_again(changed_directory):
    assert login("dave", "dave-password")[1].status_code == 200
    changed_directory.enable_user("dave")
    assert login("dave", "dave-password")[1].status_code == 302


@pytest.mark.parametrize(
    "username",
    ["*", "al*", "*)(uid=*", "alice)(|(uid=*", "alice\\", "alice\\2a", "(uid=alice)"],
)
def test_filter_metacharacters_in_the_username_cannot_widen_the_search(directory, username):
    # With an unescaped filter, "al*" or "*" would find alice and her password would work.
    # (authenticate() needs the request: the throttle keys each attempt on its client address.)
    request = RequestFactory().post(LOGIN, REMOTE_ADDR="10.1.0.1")
    assert authenticate(request, username=username, password="alice-password") is None
    assert not User.objects.filter(username=username).exists()


@pytest.mark.parametrize("username", ["al\x00ice", "alice\x00", "*\x00", "al*", "*)(uid=*", "alice\\"])
def test_user_search_escapes_every_metacharacter_including_nul(directory, settings, username):
    from portal.accounts.backends import DirectoryBackend

    search = settings.AUTH_LDAP_USER_SEARCH
    conn = directory.connect(directory.bind_dn, directory.bind_password)
    try:
        assert search.execute(conn, {"user": username}) == []
        assert len(search.execute(conn, {"user": "alice"})) == 1
    finally:
        conn.unbind_s()
    assert DirectoryBackend().authenticate(None, username=username, password="alice-password") is None


def test_nul_in_the_username_on_the_login_page_is_refused_not_a_server_error(directory):
    _, response = login("alice\x00", "alice-password")
    assert response.status_code == 200 and b'role="alert"' in response.content


def test_injection_attempt_through_the_login_page_gets_the_generic_message(directory):
    _, response = login("al*", "alice-password")
    assert response.status_code == 200 and GENERIC in response.content
    assert "_auth_user_id" not in Client().session


def test_group_changes_in_the_directory_take_effect_at_the_next_login(changed_directory):
    client, _ = login("bob", "bob-password")
    developers = Group.objects.get(name="developers")
    GlobalRoleBinding.objects.create(group=developers, role=GlobalRole.ADMINISTRATOR)
    assert client.get("/api/v1/me/").json()["is_administrator"] is True

    changed_directory.remove_from_group("bob", "developers")
    changed_directory.add_to_group("bob", "qa")
    client, _ = login("bob", "bob-password")
    me = client.get("/api/v1/me/").json()
    assert "developers" not in me["groups"] and "qa" in me["groups"]
    assert me["is_administrator"] is False


def test_admin_group_membership_follows_the_directory(changed_directory):
    client, _ = login("alice", "alice-password")
    assert User.objects.get(username="alice").is_superuser
    changed_directory.remove_from_group("alice", "corral-admins")
    client, _ = login("alice", "alice-password")
    alice = User.objects.get(username="alice")
    assert not alice.is_superuser and not alice.is_staff
    assert client.get("/api/v1/me/").json()["is_administrator"] is False
    changed_directory.add_to_group("bob", "corral-admins")
    client, _ = login("bob", "bob-password")
    assert client.get("/admin/").status_code == 200


def test_user_in_502_groups_logs_in_despite_the_500_entry_size_limit(directory):
    client, response = login("erin", "erin-password")
    assert response.status_code == 302
    groups = client.get("/api/v1/me/").json()["groups"]
    assert len(groups) == 502 and "team-499" in groups
    assert Group.objects.filter(name__startswith="team-").count() == 500


def test_local_account_keeps_working_and_cannot_be_taken_over_by_the_directory(directory):
    # A local "bob" exists: the directory's bob may not sign in as him with the directory password.
    User.objects.create_user("bob", password="local-bob-password-1")
    assert login("bob", "bob-password")[1].status_code == 200
    client, response = login("bob", "local-bob-password-1")
    assert response.status_code == 302
    assert client.get("/api/v1/me/").json()["source"] == "local"


def test_directory_outage_does_not_count_towards_the_lockout(directory, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 2
    directory.stop()
    try:
        for _ in range(3):
            login("alice", "alice-password")
    finally:
        directory.start()
    assert login("alice", "alice-password")[1].status_code == 302


def test_start_tls_verifies_the_server_certificate(directory, settings):
    from tests.ldap_fixtures import apply_directory_settings, portal_ldap_env

    apply_directory_settings(settings, portal_ldap_env(directory, PORTAL_LDAP_CA_CERT_FILE="/etc/ssl/certs/ca-certificates.crt"))
    _, response = login("alice", "alice-password")
    assert b"Directory unavailable" in response.content


def test_start_tls_is_used(directory, settings):
    """The directory is configured to require TLS for binds of people: Corral still gets in."""
    conn = directory.connect()
    try:
        assert conn.whoami_s()
    finally:
        conn.unbind_s()
    assert settings.AUTH_LDAP_START_TLS is True
    assert login("frank", "frank-password")[1].status_code == 302


def test_cluster_and_project_roles_bound_to_a_directory_group(changed_directory):
    from clusters.models import Cluster, ClusterMembership
    from projects.models import Project, ProjectMembership

    login("frank", "frank-password")  # mirrors frank's groups (qa, oncall...) into Corral
    cluster = Cluster.objects.create(name="prod", driver="sandbox", state="active")
    project = Project.objects.create(cluster=cluster, name="web")
    ClusterMembership.objects.create(cluster=cluster, group=Group.objects.get(name="oncall"), role="cluster-owner")
    ProjectMembership.objects.create(project=project, group=Group.objects.get(name="qa"), role="read-only")

    client, _ = login("frank", "frank-password")
    roles = client.get("/api/v1/me/").json()["roles"]
    assert {"cluster": cluster.pk, "cluster_name": "prod", "role": "cluster-owner", "via": "group:oncall"} in roles["clusters"]
    assert roles["projects"][0]["via"] == "group:qa"
    assert client.get(f"/api/v1/clusters/{cluster.pk}/").status_code == 200

    changed_directory.remove_from_group("frank", "oncall")
    changed_directory.remove_from_group("frank", "qa")
    client, _ = login("frank", "frank-password")
    roles = client.get("/api/v1/me/").json()["roles"]
    assert roles["clusters"] == [] and roles["projects"] == []
    assert client.get(f"/api/v1/clusters/{cluster.pk}/").status_code == 404
