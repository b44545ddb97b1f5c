"""A private OpenLDAP for the session (tools.services.ensure_slapd, the generated test
directory of docs/services.md), and fixtures that point Corral's settings at it."""

import os
import uuid

import pytest

from tools.services import default_var_dir, ensure_slapd


def portal_ldap_env(server, **overrides):
    """The PORTAL_LDAP_* variables an operator would set for this directory."""
    env = {
        "PORTAL_LDAP_SERVER_URI": server.uri,
        "PORTAL_LDAP_START_TLS": "true",
        "PORTAL_LDAP_CA_CERT_FILE": server.ca_cert_file,
        "PORTAL_LDAP_BIND_DN": server.bind_dn,
        "PORTAL_LDAP_BIND_PASSWORD": server.bind_password,
        "PORTAL_LDAP_USER_SEARCH_BASE": server.users_base,
        "PORTAL_LDAP_GROUP_SEARCH_BASE": server.groups_base,
        "PORTAL_LDAP_GROUP_TYPE": "nestedGroupOfNames",
        "PORTAL_LDAP_REQUIRE_GROUP": server.group_dn(server.required_group),
        "PORTAL_LDAP_ADMIN_GROUP": server.group_dn("corral-admins"),
        "PORTAL_LDAP_TIMEOUT_SECONDS": "2",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def apply_directory_settings(settings, environ):
    from portal.accounts.ldap_config import backends, directory_settings

    for name, value in directory_settings(environ).items():
        setattr(settings, name, value)
    settings.PORTAL_LDAP_ENABLED = True
    settings.AUTHENTICATION_BACKENDS = backends(True)


@pytest.fixture(scope="session")
def ldap_directory():
    server = ensure_slapd(default_var_dir(), name=f"pytest-{os.getpid()}", fresh=True)
    yield server
    server.destroy()


@pytest.fixture
def directory(ldap_directory, settings, db):
    """Corral signs in against the test directory (nested groups, StartTLS, required group,
    admin group).  A test that changes the directory uses `changed_directory` instead."""
    apply_directory_settings(settings, portal_ldap_env(ldap_directory))
    yield ldap_directory
    if not ldap_directory.is_running():
        ldap_directory.resume() if ldap_directory.pid else ldap_directory.start()


@pytest.fixture
def changed_directory(directory):
    """The directory, reloaded from its spec after the test so the next one starts clean."""
    yield directory
    directory.reset()


@pytest.fixture(autouse=True)
def _fresh_login_throttle(settings):
    """Each test starts with an empty cache: its own key prefix.  (Failed logins are counted in
    the database now, which each test rolls back.)"""
    caches = {name: dict(conf) for name, conf in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex[:12]}"
    settings.CACHES = caches
