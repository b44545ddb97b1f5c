"""Configuration: production refuses to start on the development key or without hosts; local runs
generate their own keys and show no debug pages."""

import json
import os
import secrets
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.fernet import Fernet, InvalidToken

from portal.keyfiles import derived_fernet_key
from portal.settings import DEFAULT_SECRET_KEY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_check(**env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    environ.update(env)
    environ.setdefault("CORRAL_VAR_DIR", "/tmp/corral-settings-test")
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)


def test_defaults_run_locally_on_sqlite():
    result = run_check()
    assert result.returncode == 0, result.stderr


def test_production_refuses_the_default_secret_key():
    result = run_check(PORTAL_DEBUG="false", PORTAL_ALLOWED_HOSTS="corral.example.com")
    assert result.returncode != 0
    assert "PORTAL_SECRET_KEY must be set" in result.stderr
    assert "Traceback" not in result.stderr.split("ImproperlyConfigured")[-1]


def test_production_refuses_missing_allowed_hosts():
    result = run_check(PORTAL_DEBUG="false", PORTAL_SECRET_KEY="k" * 60)
    assert result.returncode != 0
    assert "PORTAL_ALLOWED_HOSTS" in result.stderr


def test_a_bad_boolean_is_named():
    result = run_check(PORTAL_DEBUG="maybe")
    assert result.returncode != 0
    assert "PORTAL_DEBUG must be true or false" in result.stderr


def test_production_with_real_settings_passes_the_deploy_check():
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    environ.update(PORTAL_DEBUG="false", PORTAL_SECRET_KEY=secrets.token_urlsafe(64), PORTAL_ALLOWED_HOSTS="corral.example.com",
                   CORRAL_VAR_DIR="/tmp/corral-settings-test")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                            env=environ, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Local runs: generated keys, no debug pages ---------------------------------------------------

def run_python(code, var_dir, **env):
    """`code` run with Corral's settings as `make run` has them (no PORTAL_* set unless given)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    environ.update(env, CORRAL_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="portal.settings")
    prelude = "import django, json, sys\ndjango.setup()\nfrom django.conf import settings\n"
    result = subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


KEYS = "print(json.dumps([settings.SECRET_KEY, settings.ENCRYPTION_KEYS, settings.DEBUG]))"


def test_a_local_run_generates_its_keys_once_under_the_var_dir(tmp_path):
    secret_key, encryption_keys, debug = run_python(KEYS, tmp_path)
    assert debug is False
    assert secret_key != DEFAULT_SECRET_KEY and len(secret_key) >= 50
    assert (tmp_path / "secret-key").read_text().strip() == secret_key
    assert (tmp_path / "encryption-key").read_text().strip() == encryption_keys[0]
    Fernet(encryption_keys[0])  # a valid Fernet key
    for name in ("secret-key", "encryption-key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encryption-key", "secret-key"]  # no leftovers

    assert run_python(KEYS, tmp_path) == [secret_key, encryption_keys, False]  # reused on the next start


def test_processes_starting_together_agree_on_one_key(tmp_path):
    from portal import keyfiles

    made, barrier = iter(range(100)), threading.Barrier(8)

    def make():
        barrier.wait(timeout=10)  # every thread has found no file and makes its own key
        return f"key-{next(made)}"

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: keyfiles.read_or_create(tmp_path / "k", make), range(8)))
    assert keys == {(tmp_path / "k").read_text().strip()}
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


@pytest.mark.parametrize("mode", [{}, {"PORTAL_DEBUG": "true"}], ids=["local", "debug"])
def test_credentials_a_local_run_stores_do_not_open_with_the_published_key(tmp_path, mode):
    token = run_python("from portal.fields import encrypt_json\nprint(json.dumps(encrypt_json({'token': 's3cret'})))", tmp_path, **mode)
    with pytest.raises(InvalidToken):
        Fernet(derived_fernet_key(DEFAULT_SECRET_KEY)).decrypt(token.encode())
    assert json.loads(Fernet((tmp_path / "encryption-key").read_text().strip()).decrypt(token.encode())) == {"token": "s3cret"}


def test_credentials_stored_before_the_upgrade_still_decrypt(tmp_path):
    def run(token, **env):
        code = "import os\nfrom portal.fields import decrypt_json\nprint(json.dumps(decrypt_json(os.environ['TOKEN'])))"
        return run_python(code, tmp_path, TOKEN=token, **env)

    # A local install kept them under the key derived from the published key ...
    old_local = Fernet(derived_fernet_key(DEFAULT_SECRET_KEY)).encrypt(b'{"token": "a"}').decode()
    assert run(old_local) == {"token": "a"}
    # ... and production, without PORTAL_ENCRYPTION_KEYS, under the key derived from its secret key (unchanged).
    secret_key = secrets.token_urlsafe(64)
    old_production = Fernet(derived_fernet_key(secret_key)).encrypt(b'{"token": "b"}').decode()
    assert run(old_production, PORTAL_DEBUG="false", PORTAL_SECRET_KEY=secret_key, PORTAL_ALLOWED_HOSTS="corral.example.com") == {"token": "b"}


SERVER_ERROR = """
import types
from django.test import Client, override_settings
from django.urls import include, path

def fail(request):
    local_secret = "a-local-variable-value"
    raise RuntimeError("boom")

urls = types.ModuleType("failing_urls")
urls.urlpatterns = [path("fail/", fail), path("", include("portal.urls"))]
sys.modules["failing_urls"] = urls
with override_settings(ROOT_URLCONF="failing_urls"):
    response = Client(raise_request_exception=False).get("/fail/", HTTP_HOST="127.0.0.1")
print(json.dumps([response.status_code, response.content.decode()]))
"""


def test_a_server_error_shows_no_debug_page_unless_debug_is_chosen(tmp_path):
    status, body = run_python(SERVER_ERROR, tmp_path)
    assert status == 500
    for leak in ("Traceback", "a-local-variable-value", "SECRET_KEY", "RuntimeError", "settings"):
        assert leak not in body
    # the same error with PORTAL_DEBUG=true does show them: the probe above would see a leak
    status, body = run_python(SERVER_ERROR, tmp_path, PORTAL_DEBUG="true")
    assert status == 500 and "a-local-variable-value" in body and "Traceback" in body


def test_reencrypting_moves_credentials_off_older_keys(db, settings):
    from io import StringIO

    from django.core.management import call_command

    from clusters.models import Cluster
    from tests.conftest import make_cluster

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS, settings.ENCRYPTION_FALLBACK_KEYS = [old], []
    before = make_cluster("before", credentials={"token": "a"})
    settings.ENCRYPTION_KEYS, settings.ENCRYPTION_FALLBACK_KEYS = [new], [old]
    make_cluster("after", credentials={"token": "b"})
    make_cluster("without")

    out = StringIO()
    call_command("reencrypt_credentials", stdout=out)
    assert "re-encrypted 1 stored credential" in out.getvalue()
    out = StringIO()
    call_command("reencrypt_credentials", stdout=out)
    assert out.getvalue() == ""  # nothing left on the old key: nothing rewritten

    settings.ENCRYPTION_FALLBACK_KEYS = []  # the old key retired
    assert Cluster.objects.get(pk=before.pk).credentials == {"token": "a"}
    assert Cluster.objects.get(name="after").credentials == {"token": "b"}


SQLITE_WRITERS = """
import threading, django
django.setup()
from django.db import connection, transaction
print(connection.cursor().execute("PRAGMA journal_mode").fetchone()[0], connection.transaction_mode)
with connection.cursor() as c:
    c.execute("CREATE TABLE IF NOT EXISTS counter (id integer primary key, value integer)")
    c.execute("INSERT OR REPLACE INTO counter VALUES (1, 0)")
errors = []

def writer():
    try:
        for _ in range(50):
            with transaction.atomic(), connection.cursor() as c:  # read, then write: the upgrade that failed
                value = c.execute("SELECT value FROM counter WHERE id = 1").fetchone()[0]
                c.execute("UPDATE counter SET value = %s WHERE id = 1", [value + 1])
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connection.close()

threads = [threading.Thread(target=writer) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(connection.cursor().execute("SELECT value FROM counter WHERE id = 1").fetchone()[0], errors)
"""


def test_sqlite_by_url_uses_wal_and_immediate_transactions_so_concurrent_writers_wait(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    environ.update(CORRAL_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="portal.settings",
                   PORTAL_DATABASE_URL=f"sqlite:///{tmp_path / 'corral.sqlite3'}")
    result = subprocess.run([sys.executable, "-c", SQLITE_WRITERS], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["wal IMMEDIATE", "400 []"]
