"""Benchmarks run against a throwaway PostgreSQL database (the private server `make test` uses),
never against the portal's own data.  Import this before anything Django."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup(name="corral_bench"):
    """Point Django at a fresh database ``name``, migrate it, and return the URL."""
    from tools.services import ensure_postgres, ensure_redis

    var = Path(os.environ.get("CORRAL_VAR_DIR", ROOT / "var"))
    base = os.environ.get("PORTAL_DATABASE_URL") or ensure_postgres(var)
    if not base.startswith("postgres"):
        raise SystemExit("benchmarks need PostgreSQL: unset PORTAL_DATABASE_URL or point it at a PostgreSQL server")
    os.environ.setdefault("PORTAL_REDIS_URL", ensure_redis(var))
    server = base.rsplit("/", 1)[0]
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["PORTAL_DATABASE_URL"] = f"{server}/{name}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("PORTAL_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return os.environ["PORTAL_DATABASE_URL"]


def load_bench_module(name):
    """Import another bench script (e.g. ``sandbox``) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
