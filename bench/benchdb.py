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

    var = Path(os.environ.get("CORRAL_VAR_DIR") or ROOT / "var")
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


class PeakRSS:
    """The highest resident memory of this process while the block runs, sampled every 10 ms:
    ``with PeakRSS() as peak: ...`` then ``peak.base`` and ``peak.max`` in bytes."""

    def __init__(self, interval=0.01):
        import psutil

        self.process, self.interval = psutil.Process(), interval
        self.base = self.max = 0

    def __enter__(self):
        import threading

        self.base = self.max = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.max = max(self.max, self.process.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.max = max(self.max, self.process.memory_info().rss)

    @property
    def grew(self):
        return self.max - self.base
