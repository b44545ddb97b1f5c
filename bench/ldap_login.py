"""Directory login latency: p50/p95 of a full login through the login page (throttle check,
StartTLS, service bind, user search, user bind, group search, group mirroring, session) for a
user in 5 groups and a user in 502 groups.  Target: p95 under 300 ms for the 502-group user.

    eval "$(python -m tools.services up postgres redis)"
    python bench/ldap_login.py [--rounds 50]

Runs a private slapd (the test directory of docs/services.md, default 500-entry size limit)
and a throwaway test database; both are removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("PORTAL_LOG_LEVEL", "ERROR")

from tools.services import default_var_dir, ensure_slapd  # noqa: E402


def percentile(values, p):
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def directory_env(server):
    return {
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
    }


def login_ms(client, username):
    started = time.perf_counter()
    response = client.post("/login/", {"username": username, "password": f"{username}-password"})
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 302:
        raise SystemExit(f"login of {username} failed: {response.status_code}")
    client.post("/logout/")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()

    server = ensure_slapd(default_var_dir(), name=f"bench-{os.getpid()}", fresh=True)
    try:
        os.environ.update(directory_env(server))
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth.models import User
        from django.db import connection
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()
        settings.ALLOWED_HOSTS = ["testserver"]
        old_name = connection.settings_dict["NAME"]
        connection.settings_dict.setdefault("TEST", {})["NAME"] = f"{old_name}_bench_{os.getpid()}"
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
        try:
            client = Client(REMOTE_ADDR="192.0.2.10")
            print(f"slapd {server.uri} (StartTLS), group type nestedGroupOfNames, {args.rounds} rounds, "
                  f"database {connection.vendor}")
            for username in ("frank", "erin"):
                first = login_ms(client, username)
                groups = User.objects.get(username=username).groups.count()
                samples = [login_ms(client, username) for _ in range(args.rounds)]
                print(f"{username:6} {groups:4} groups  first login {first:7.1f} ms  "
                      f"p50 {statistics.median(samples):6.1f} ms  p95 {percentile(samples, 95):6.1f} ms  "
                      f"max {max(samples):6.1f} ms")
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
