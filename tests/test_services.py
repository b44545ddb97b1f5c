"""The throwaway PostgreSQL, Redis and OpenLDAP of tools/services.py, against the real servers.

Everything runs under a private var dir inside the repo's var/ (the postgres user must be able
to reach it, which pytest's 0700 tmp dirs do not allow), stopped and removed at the end.
"""

import os
import shutil
import subprocess
import sys
import time
import uuid

import ldap
import psycopg
import pytest
import redis
from ldap.controls import SimplePagedResultsControl

from tools import services
from tools.ldapdata import LOCKED_FOREVER, default_directory
from tools.ldapdir import ensure_slapd

pytestmark = pytest.mark.skipif(
    os.environ.get("CORRAL_SKIP_SERVICE_TESTS") == "1", reason="CORRAL_SKIP_SERVICE_TESTS=1")


@pytest.fixture(scope="module")
def var():
    path = services.default_var_dir() / f"test-services-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    services.stop_all(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def directory(var):
    server = ensure_slapd(var, name="tests", fresh=True)
    yield server
    server.destroy()


@pytest.fixture
def pristine(directory):
    """For tests that change the directory: put it back afterwards."""
    yield directory
    directory.reset()


def paged_search(conn, base, filterstr, attrs):
    page = SimplePagedResultsControl(True, size=100, cookie=b"")
    results = []
    while True:
        msgid = conn.search_ext(base, ldap.SCOPE_SUBTREE, filterstr, attrs, serverctrls=[page])
        _, data, _, controls = conn.result3(msgid)
        results += data
        cookie = next(c.cookie for c in controls if c.controlType == page.controlType)
        if not cookie:
            return results
        page.cookie = cookie


# --- PostgreSQL ----------------------------------------------------------------------------

def test_postgres_accepts_connections_and_lets_the_test_runner_create_databases(var):
    url = services.ensure_postgres(var)
    assert url.startswith("postgresql://corral@127.0.0.1:") and url.endswith("/corral")
    name = f"test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("corral",)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(url.rsplit("/", 1)[0] + f"/{name}") as conn:
        conn.execute("CREATE TABLE t (id int)")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}"')


def test_postgres_does_not_run_as_root(var):
    services.ensure_postgres(var)
    pid = services.read_int(var / "postgres" / "data" / "postmaster.pid")
    assert os.stat(f"/proc/{pid}").st_uid != 0


def test_the_durable_postgres_of_make_run_is_a_separate_cluster_that_syncs_its_writes(var):
    url = services.ensure_postgres(var, durable=True)
    assert url != services.ensure_postgres(var)
    with psycopg.connect(url, autocommit=True) as conn:
        for name in ("fsync", "synchronous_commit", "full_page_writes"):
            assert conn.execute(f"SHOW {name}").fetchone() == ("on",), name
    assert services.stop_postgres(var, durable=True)


def test_second_ensure_postgres_reuses_the_running_cluster(var):
    url = services.ensure_postgres(var)
    pid = services.read_int(var / "postgres" / "data" / "postmaster.pid")
    assert services.ensure_postgres(var) == url
    assert services.read_int(var / "postgres" / "data" / "postmaster.pid") == pid


# --- Redis ---------------------------------------------------------------------------------

def test_redis_keeps_its_data_in_an_append_only_file_and_never_evicts(var):
    url = services.ensure_redis(var)
    client = redis.Redis.from_url(url)
    assert client.ping()
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    client.close()


def test_a_running_redis_without_persistence_gets_it_when_reused(var):
    url = services.ensure_redis(var)
    client = redis.Redis.from_url(url)
    client.config_set("appendonly", "no")
    assert services.ensure_redis(var) == url
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    client.close()


def test_queued_work_survives_a_redis_restart(var):
    url = services.ensure_redis(var)
    client = redis.Redis.from_url(url)
    client.lpush("celery", "a queued task")
    time.sleep(1.2)  # appendfsync everysec
    client.close()
    assert services.stop_redis(var)
    url = services.ensure_redis(var)
    client = redis.Redis.from_url(url)
    assert client.lrange("celery", 0, -1) == [b"a queued task"]
    client.delete("celery")
    client.close()


def test_second_ensure_redis_reuses_the_running_server(var):
    url = services.ensure_redis(var)
    pid = services.read_int(var / "redis" / "redis.pid")
    assert services.ensure_redis(var) == url
    assert services.read_int(var / "redis" / "redis.pid") == pid


# --- OpenLDAP ------------------------------------------------------------------------------

@pytest.mark.ldap
def test_user_binds_over_starttls_verifying_the_generated_ca(directory):
    conn = directory.connect("alice", "alice-password")
    assert conn.whoami_s() == f"dn:{directory.user_dn('alice')}"
    conn.unbind_s()


@pytest.mark.ldap
def test_starttls_refuses_a_server_the_ca_does_not_vouch_for(directory, tmp_path):
    other = ensure_slapd(directory.home.parent, {"users": [], "groups": []}, name="other-ca")
    try:
        conn = ldap.initialize(directory.uri)
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, other.ca_cert_file)
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        with pytest.raises(ldap.CONNECT_ERROR):
            conn.start_tls_s()
    finally:
        other.destroy()


@pytest.mark.ldap
def test_require_tls_refuses_plain_binds(var):
    server = ensure_slapd(var, {"require_tls": True, "users": [], "groups": []}, name="tls-only")
    try:
        with pytest.raises(ldap.CONFIDENTIALITY_REQUIRED):
            server.connect(server.bind_dn, server.bind_password, start_tls=False)
        server.connect(server.bind_dn, server.bind_password).unbind_s()
    finally:
        server.destroy()


@pytest.mark.ldap
def test_wrong_password_is_refused(directory):
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        directory.connect("alice", "not-alice-password")


@pytest.mark.ldap
def test_disabled_user_is_locked_and_outside_the_required_group(directory):
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        directory.connect("dave", "dave-password")
    conn = directory.connect(directory.bind_dn, directory.bind_password)
    [(_, attrs)] = conn.search_s(directory.user_dn("dave"), ldap.SCOPE_BASE,
                                 attrlist=["pwdAccountLockedTime", "memberOf"])
    assert attrs["pwdAccountLockedTime"] == [LOCKED_FOREVER.encode()]
    assert directory.group_dn("corral-users").encode() not in attrs["memberOf"]


@pytest.mark.ldap
def test_anonymous_users_cannot_read_the_directory(directory):
    conn = ldap.initialize(directory.uri)
    with pytest.raises(ldap.NO_SUCH_OBJECT):
        conn.search_s(directory.users_base, ldap.SCOPE_SUBTREE, "(uid=alice)")


@pytest.mark.ldap
def test_erin_is_a_member_of_more_than_500_groups(directory):
    conn = directory.connect(directory.bind_dn, directory.bind_password)
    [(_, attrs)] = conn.search_s(directory.user_dn("erin"), ldap.SCOPE_BASE,
                                 attrlist=["memberOf"])
    assert len(attrs["memberOf"]) == 502
    member_filter = f"(member={directory.user_dn('erin')})"
    # slapd's default size limit (500) stops a plain search; paging returns every group.
    with pytest.raises(ldap.SIZELIMIT_EXCEEDED):
        conn.search_s(directory.groups_base, ldap.SCOPE_SUBTREE, member_filter, ["cn"])
    assert len(paged_search(conn, directory.groups_base, member_filter, ["cn"])) == 502


@pytest.mark.ldap
def test_carol_reaches_the_required_group_only_through_nested_groups(directory):
    conn = directory.connect(directory.bind_dn, directory.bind_password)

    def parents(dn):
        return {g for g, _ in conn.search_s(directory.groups_base, ldap.SCOPE_SUBTREE,
                                            f"(member={dn})", ["cn"])}

    carol, ops, platform = (directory.user_dn("carol"), directory.group_dn("ops"),
                            directory.group_dn("platform"))
    assert parents(carol) == {ops}
    assert parents(ops) == {platform}
    assert parents(platform) == {directory.group_dn("corral-users")}


@pytest.mark.ldap
def test_directory_changes_mid_test_are_seen_at_once(pristine):
    directory = pristine
    directory.add_user("zoe", groups=["developers", "corral-users"])
    directory.connect("zoe", "zoe-password").unbind_s()
    conn = directory.connect(directory.bind_dn, directory.bind_password)

    def member_of(uid):
        [(_, attrs)] = conn.search_s(directory.user_dn(uid), ldap.SCOPE_BASE,
                                     attrlist=["memberOf"])
        return {dn.decode() for dn in attrs.get("memberOf", [])}

    assert directory.group_dn("developers") in member_of("zoe")
    directory.remove_from_group("zoe", "developers")
    assert directory.group_dn("developers") not in member_of("zoe")
    directory.disable_user("zoe")
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        directory.connect("zoe", "zoe-password")
    assert directory.group_dn("corral-users") not in member_of("zoe")
    directory.enable_user("zoe")
    directory.connect("zoe", "zoe-password").unbind_s()
    directory.delete_user("alice")
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        directory.connect("alice", "alice-password")
    [(_, attrs)] = conn.search_s(directory.group_dn("corral-admins"), ldap.SCOPE_BASE,
                                 attrlist=["member"])
    assert attrs["member"] == [directory.nobody_dn.encode()]  # refint emptied the group


@pytest.mark.ldap
def test_reset_restores_the_spec(directory):
    directory.add_user("yann")
    directory.reset()
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        directory.connect("yann", "yann-password")
    directory.connect("alice", "alice-password").unbind_s()


@pytest.mark.ldap
def test_paused_directory_makes_connections_time_out(directory):
    directory.pause()
    try:
        started = time.monotonic()
        with pytest.raises((ldap.TIMEOUT, ldap.SERVER_DOWN)):
            directory.connect("alice", "alice-password", timeout=1)
        assert time.monotonic() - started < 5
    finally:
        directory.resume()
    directory.connect("alice", "alice-password").unbind_s()


@pytest.mark.ldap
def test_second_ensure_slapd_reuses_the_running_instance(directory, var):
    again = ensure_slapd(var, name="tests")
    assert (again.port, again.pid) == (directory.port, directory.pid)


@pytest.mark.ldap
def test_stop_frees_the_port_and_a_later_ensure_starts_again(var):
    small = {"users": default_directory()["users"][:2], "groups": []}
    server = ensure_slapd(var, small, name="stoppable")
    port = server.port
    server.stop()
    assert not services.pid_alive(server.pid)
    assert services.port_is_free(port)
    again = ensure_slapd(var, small, name="stoppable")
    again.connect("alice", "alice-password").unbind_s()
    again.destroy()


@pytest.mark.ldap
def test_startup_is_fast(var):
    started = time.monotonic()
    server = ensure_slapd(var, name="timed", fresh=True)
    elapsed = time.monotonic() - started
    server.destroy()
    assert elapsed < 5


# --- CLI and stop_all ----------------------------------------------------------------------

@pytest.mark.ldap
def test_cli_up_prints_exports_and_down_stops_everything(var):
    cli_var = var / "cli"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "tools.services", "--var", str(cli_var),
                               *args], capture_output=True, text=True, check=True,
                              cwd=services.REPO).stdout

    out = cli("up", "redis") + cli("up", "slapd")
    exports = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    assert exports["PORTAL_REDIS_URL"].startswith("redis://127.0.0.1:")
    assert exports["PORTAL_LDAP_SERVER_URI"].startswith("ldap://127.0.0.1:")
    assert (cli_var / "services.env").read_text() == out  # both `up`s kept
    assert "redis: redis://" in cli("status")
    pids = [services.read_int(cli_var / "redis" / "redis.pid"),
            services.read_int(cli_var / "slapd-default" / "slapd.pid")]
    cli("down")
    assert not any(services.pid_alive(pid) for pid in pids)


@pytest.mark.ldap
def test_stop_all_wakes_a_paused_slapd(var):
    own_var = var / "stop-all"
    server = ensure_slapd(own_var, {"users": [], "groups": []}, name="paused")
    pid = server.pid
    server.pause()
    assert services.stop_all(own_var) == ["slapd-paused"]
    assert not services.pid_alive(pid)


def test_a_stale_pidfile_never_signals_another_program(tmp_path):
    """Pids wrap around: a pidfile left behind may name someone else's process by now."""
    import subprocess
    import sys

    from tools.services import stop_pid

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pidfile = tmp_path / "slapd.pid"
        pidfile.write_text(f"{bystander.pid}\n")
        assert stop_pid(pidfile) is False
        assert bystander.poll() is None  # still running
        assert not pidfile.exists()
    finally:
        bystander.kill()
        bystander.wait()
