"""Configuration: production refuses to start on the development key or without hosts."""

import os
import secrets
import subprocess
import sys

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
