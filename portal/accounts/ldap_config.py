"""The one place where PORTAL_LDAP_* environment variables become django-auth-ldap settings.

``portal/settings.py`` ends with ``configure(globals())``.  Directory sign-in is on when
``PORTAL_LDAP_SERVER_URI`` is set; otherwise only local accounts exist.  docs/auth.md lists
every variable with an OpenLDAP and an Active Directory example.
"""

import os
import re
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured

from portal.envconfig import env_bool, env_int

THROTTLE_BACKEND = "axes.backends.AxesStandaloneBackend"
LOCAL_BACKEND = "django.contrib.auth.backends.ModelBackend"
DIRECTORY_BACKEND = "portal.accounts.backends.DirectoryBackend"


def _uris(value):
    """Several servers, separated by commas or spaces: libldap tries them in turn."""
    uris = [u for u in re.split(r"[\s,]+", value.strip()) if u]
    for uri in uris:
        if not uri.lower().startswith(("ldap://", "ldaps://")):
            raise ImproperlyConfigured(f"PORTAL_LDAP_SERVER_URI: {uri!r} must start with ldap:// or ldaps://")
    return " ".join(uris)


def directory_settings(environ=None):
    """The AUTH_LDAP_* settings for ``environ`` (default os.environ); {} when LDAP is off."""
    import ldap
    from django_auth_ldap.config import LDAPSearch

    from portal.accounts.groups import GROUP_TYPES

    environ = os.environ if environ is None else environ
    uri = environ.get("PORTAL_LDAP_SERVER_URI", "").strip()
    if not uri:
        return {}

    def required(name):
        value = environ.get(name, "").strip()
        if not value:
            raise ImproperlyConfigured(f"{name} must be set when PORTAL_LDAP_SERVER_URI is")
        return value

    timeout = env_int("PORTAL_LDAP_TIMEOUT_SECONDS", 5, environ)
    group_type_name = environ.get("PORTAL_LDAP_GROUP_TYPE", "groupOfNames").strip()
    if group_type_name not in GROUP_TYPES:
        raise ImproperlyConfigured(f"PORTAL_LDAP_GROUP_TYPE must be one of {', '.join(GROUP_TYPES)}, not {group_type_name!r}")
    make_group_type, group_class_filter = GROUP_TYPES[group_type_name]
    group_name_attr = environ.get("PORTAL_LDAP_GROUP_NAME_ATTR", "cn").strip()
    active_directory = group_type_name in ("activeDirectory", "nestedActiveDirectory")

    options = {
        ldap.OPT_PROTOCOL_VERSION: 3,
        ldap.OPT_REFERRALS: 0,  # AD answers with referrals that would need other credentials
        ldap.OPT_NETWORK_TIMEOUT: timeout,  # connecting
        ldap.OPT_TIMEOUT: timeout,  # each bind/search: a hung server must not hang the login
        ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND,
    }
    ca_file = environ.get("PORTAL_LDAP_CA_CERT_FILE", "").strip()
    if ca_file:
        options[ldap.OPT_X_TLS_CACERTFILE] = ca_file
    options[ldap.OPT_X_TLS_NEWCTX] = 0  # last: applies the TLS options above to this connection

    # Extra attributes of the user entry: how OpenLDAP (ppolicy) and AD mark a disabled account.
    user_attrs = ["*", "pwdAccountLockedTime"] + (["userAccountControl"] if active_directory else [])
    user_filter = environ.get("PORTAL_LDAP_USER_FILTER", "").strip() or (
        "(sAMAccountName=%(user)s)" if active_directory else "(uid=%(user)s)"
    )
    admin_group = environ.get("PORTAL_LDAP_ADMIN_GROUP", "").strip() or None
    staff_group = environ.get("PORTAL_LDAP_STAFF_GROUP", "").strip() or None
    flags = {}
    if admin_group:
        flags["is_superuser"] = admin_group
    staff = [g for g in (admin_group, staff_group) if g]
    if staff:
        from django_auth_ldap.config import LDAPGroupQuery

        query = LDAPGroupQuery(staff[0])
        for dn in staff[1:]:
            query |= LDAPGroupQuery(dn)
        flags["is_staff"] = query

    return {
        "AUTH_LDAP_SERVER_URI": _uris(uri),
        "AUTH_LDAP_BIND_DN": environ.get("PORTAL_LDAP_BIND_DN", ""),
        "AUTH_LDAP_BIND_PASSWORD": environ.get("PORTAL_LDAP_BIND_PASSWORD", ""),
        "AUTH_LDAP_START_TLS": env_bool("PORTAL_LDAP_START_TLS", False, environ),
        "AUTH_LDAP_CONNECTION_OPTIONS": options,
        # The username goes through ldap.filter.escape_filter_chars (* ( ) \ NUL) before this
        # filter is filled in: it cannot widen the search.
        "AUTH_LDAP_USER_SEARCH": LDAPSearch(
            required("PORTAL_LDAP_USER_SEARCH_BASE"), ldap.SCOPE_SUBTREE, user_filter, user_attrs
        ),
        "AUTH_LDAP_USER_ATTR_MAP": {
            "first_name": environ.get("PORTAL_LDAP_ATTR_FIRST_NAME", "givenName"),
            "last_name": environ.get("PORTAL_LDAP_ATTR_LAST_NAME", "sn"),
            "email": environ.get("PORTAL_LDAP_ATTR_EMAIL", "mail"),
        },
        "AUTH_LDAP_GROUP_SEARCH": LDAPSearch(
            required("PORTAL_LDAP_GROUP_SEARCH_BASE"), ldap.SCOPE_SUBTREE, group_class_filter, [group_name_attr]
        ),
        "AUTH_LDAP_GROUP_TYPE": make_group_type(group_name_attr),
        "AUTH_LDAP_REQUIRE_GROUP": environ.get("PORTAL_LDAP_REQUIRE_GROUP", "").strip() or None,
        "AUTH_LDAP_USER_FLAGS_BY_GROUP": flags,
        "AUTH_LDAP_MIRROR_GROUPS": True,
        "AUTH_LDAP_ALWAYS_UPDATE_USER": True,
        "AUTH_LDAP_FIND_GROUP_PERMS": False,
        "AUTH_LDAP_CACHE_TIMEOUT": 0,  # group changes must show at the next login
        "PORTAL_LDAP_ADMIN_GROUP": admin_group,
        "PORTAL_LDAP_TIMEOUT_SECONDS": timeout,
    }


def backends(directory_enabled):
    """The throttle comes first (it refuses a locked (name, address) before any backend sees
    the password).  Then the directory backend: it declines local accounts with one database query,
    without asking the directory (so a break-glass administrator gets in while the directory
    is down), and it spares directory users ModelBackend's password hashing, which Django runs
    even for accounts without a usable password (some 200 ms per login)."""
    return [THROTTLE_BACKEND, DIRECTORY_BACKEND, LOCAL_BACKEND] if directory_enabled else [THROTTLE_BACKEND, LOCAL_BACKEND]


def configure(settings):
    """Add authentication settings to the settings module's globals()."""
    environ = os.environ
    ldap_settings = directory_settings(environ)
    settings.update(ldap_settings)
    settings["PORTAL_LDAP_ENABLED"] = bool(ldap_settings)
    settings["AUTHENTICATION_BACKENDS"] = backends(bool(ldap_settings))
    settings["PORTAL_LOGIN_MAX_FAILURES"] = env_int("PORTAL_LOGIN_MAX_FAILURES", 5, environ)
    settings["PORTAL_LOGIN_LOCKOUT_SECONDS"] = env_int("PORTAL_LOGIN_LOCKOUT_SECONDS", 300, environ)
    settings["LOGIN_URL"] = "login"
    periodic = settings.setdefault("PERIODIC_TASKS", {})
    periodic["accounts: refresh directory users"] = {
        "task": "portal.accounts.tasks.refresh_directory_users",
        "every": timedelta(seconds=env_int("PORTAL_LDAP_REFRESH_SECONDS", 3600, environ)),
    }
