"""PORTAL_LDAP_* environment variables map onto django-auth-ldap settings in one place."""

import ldap
import pytest
from django.core.exceptions import ImproperlyConfigured
from django_auth_ldap.config import PosixGroupType

from portal.accounts import groups
from portal.accounts.ldap_config import configure, directory_settings

BASE = {
    "PORTAL_LDAP_SERVER_URI": "ldaps://dc1.example.com, ldaps://dc2.example.com",
    "PORTAL_LDAP_BIND_DN": "cn=svc,dc=example,dc=com",
    "PORTAL_LDAP_BIND_PASSWORD": "secret",
    "PORTAL_LDAP_USER_SEARCH_BASE": "ou=people,dc=example,dc=com",
    "PORTAL_LDAP_GROUP_SEARCH_BASE": "ou=groups,dc=example,dc=com",
}


def test_directory_sign_in_is_off_without_a_server_uri(monkeypatch):
    assert directory_settings({}) == {}
    settings = {"PERIODIC_TASKS": {}}
    monkeypatch.delenv("PORTAL_LDAP_SERVER_URI", raising=False)
    configure(settings)
    assert settings["AUTHENTICATION_BACKENDS"] == ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
    assert settings["PORTAL_LDAP_ENABLED"] is False
    assert "accounts: refresh directory users" in settings["PERIODIC_TASKS"]
    assert settings["PORTAL_LOGIN_MAX_FAILURES"] == 5 and settings["PORTAL_LOGIN_LOCKOUT_SECONDS"] == 300


def test_every_variable_reaches_django_auth_ldap():
    env = dict(
        BASE,
        PORTAL_LDAP_USER_FILTER="(mail=%(user)s)",
        PORTAL_LDAP_GROUP_TYPE="nestedGroupOfNames",
        PORTAL_LDAP_START_TLS="true",
        PORTAL_LDAP_CA_CERT_FILE="/etc/corral/ca.pem",
        PORTAL_LDAP_REQUIRE_GROUP="cn=corral,ou=groups,dc=example,dc=com",
        PORTAL_LDAP_ADMIN_GROUP="cn=admins,ou=groups,dc=example,dc=com",
        PORTAL_LDAP_TIMEOUT_SECONDS="3",
        PORTAL_LDAP_ATTR_EMAIL="userPrincipalName",
    )
    s = directory_settings(env)
    assert s["AUTH_LDAP_SERVER_URI"] == "ldaps://dc1.example.com ldaps://dc2.example.com"
    assert s["AUTH_LDAP_BIND_DN"] == "cn=svc,dc=example,dc=com" and s["AUTH_LDAP_BIND_PASSWORD"] == "secret"
    assert s["AUTH_LDAP_START_TLS"] is True
    assert s["AUTH_LDAP_USER_SEARCH"].base_dn == "ou=people,dc=example,dc=com"
    assert s["AUTH_LDAP_USER_SEARCH"].filterstr == "(mail=%(user)s)"
    assert s["AUTH_LDAP_GROUP_SEARCH"].base_dn == "ou=groups,dc=example,dc=com"
    assert isinstance(s["AUTH_LDAP_GROUP_TYPE"], groups.PagedNestedMemberDNGroupType)
    assert s["AUTH_LDAP_REQUIRE_GROUP"] == "cn=corral,ou=groups,dc=example,dc=com"
    assert s["AUTH_LDAP_USER_FLAGS_BY_GROUP"]["is_superuser"] == "cn=admins,ou=groups,dc=example,dc=com"
    assert s["AUTH_LDAP_USER_ATTR_MAP"] == {"first_name": "givenName", "last_name": "sn", "email": "userPrincipalName"}
    assert s["AUTH_LDAP_MIRROR_GROUPS"] is True
    options = s["AUTH_LDAP_CONNECTION_OPTIONS"]
    assert options[ldap.OPT_NETWORK_TIMEOUT] == 3 and options[ldap.OPT_TIMEOUT] == 3
    assert options[ldap.OPT_X_TLS_CACERTFILE] == "/etc/corral/ca.pem"
    assert options[ldap.OPT_X_TLS_REQUIRE_CERT] == ldap.OPT_X_TLS_DEMAND
    assert list(options)[-1] == ldap.OPT_X_TLS_NEWCTX  # applied after the TLS options


@pytest.mark.parametrize(
    "name, kind, object_class",
    [
        ("groupOfNames", groups.PagedMemberDNGroupType, "groupOfNames"),
        ("nestedGroupOfNames", groups.PagedNestedMemberDNGroupType, "groupOfNames"),
        ("groupOfUniqueNames", groups.PagedMemberDNGroupType, "groupOfUniqueNames"),
        ("posixGroup", PosixGroupType, "posixGroup"),
        ("activeDirectory", groups.PagedMemberDNGroupType, "group"),
        ("nestedActiveDirectory", groups.InChainGroupType, "group"),
    ],
)
def test_each_group_type(name, kind, object_class):
    s = directory_settings(dict(BASE, PORTAL_LDAP_GROUP_TYPE=name))
    assert isinstance(s["AUTH_LDAP_GROUP_TYPE"], kind)
    assert s["AUTH_LDAP_GROUP_SEARCH"].filterstr == f"(objectClass={object_class})"


def test_active_directory_defaults_to_sam_account_name_and_reads_user_account_control():
    s = directory_settings(dict(BASE, PORTAL_LDAP_GROUP_TYPE="nestedActiveDirectory"))
    assert s["AUTH_LDAP_USER_SEARCH"].filterstr == "(sAMAccountName=%(user)s)"
    assert "userAccountControl" in s["AUTH_LDAP_USER_SEARCH"].attrlist
    assert directory_settings(BASE)["AUTH_LDAP_USER_SEARCH"].filterstr == "(uid=%(user)s)"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"PORTAL_LDAP_GROUP_TYPE": "openGroups"}, "PORTAL_LDAP_GROUP_TYPE"),
        ({"PORTAL_LDAP_SERVER_URI": "http://dc1"}, "ldap:// or ldaps://"),
        ({"PORTAL_LDAP_USER_SEARCH_BASE": ""}, "PORTAL_LDAP_USER_SEARCH_BASE"),
        ({"PORTAL_LDAP_START_TLS": "maybe"}, "PORTAL_LDAP_START_TLS"),
        ({"PORTAL_LDAP_TIMEOUT_SECONDS": "soon"}, "PORTAL_LDAP_TIMEOUT_SECONDS"),
    ],
)
def test_bad_configuration_fails_fast_naming_the_variable(change, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        directory_settings(dict(BASE, **change))
