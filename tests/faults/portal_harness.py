"""A whole portal as `make run` runs it, for breaking on purpose: its own PostgreSQL and Redis (the
same tools/services.py that `make run` uses, under a private var/), web + beat + watcher under
`make run`'s supervisor (tools/run.py), a Celery worker the test starts and kills, and a sandbox
cluster of its own, imported.  Nothing here is shared with the rest of the suite, so a test may
kill any of it: the database, the broker, the apiserver, the watcher or the worker.

The test process reads the portal's database with plain SQL (its Django connection is the suite's
test database); ``differences()`` compares the portal's inventory with what the cluster's API lists
object by object (uid and resourceVersion), as tests/faults/inventory_match.py does in-process;
nodes by uid only, since kwok renews their heartbeats and so their resourceVersions all the time."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import psycopg
import requests

from tests.faults.inventory_match import LISTS
from tests.waiting import wait_for
from tools import services

REPO = Path(__file__).resolve().parents[2]


class Supervisor:
    """A process whose output lines are kept (tools/run.py, usually), and its children found by name."""

    def __init__(self, argv, env=None, log_path=None):
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env or os.environ.copy())
        self.lines = []
        self.log = open(log_path, "a") if log_path else None  # noqa: SIM115 - closed by kill()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if self.log:
                self.log.write(line)
                self.log.flush()

    def wait_for(self, predicate, timeout=30, what="condition"):
        return wait_for(predicate, timeout, what, lambda: "output:\n" + "\n".join(self.lines[-40:]))

    def child(self, marker):
        for child in psutil.Process(self.proc.pid).children():
            try:
                if marker in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        return None

    def said(self, text):
        return [line for line in self.lines if text in line]

    def interrupt(self):
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=30)
        gone, alive = psutil.wait_procs(children, timeout=10)
        return code, alive

    def kill(self):
        if self.proc.poll() is None:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
            self.proc.kill()
            self.proc.wait()
        if self.log:
            self.log.close()


class Portal:
    def __init__(self, var: Path, sandbox, env=None):
        self.var, self.sandbox = var, sandbox
        self.database_url = services.ensure_postgres(var)
        self.redis_url = services.ensure_redis(var)
        self.port = services.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DJANGO_", "PYTEST"))}
        self.env.update({
            "DJANGO_SETTINGS_MODULE": "portal.settings", "CORRAL_VAR_DIR": str(var),
            "PORTAL_DATABASE_URL": self.database_url, "PORTAL_REDIS_URL": self.redis_url,
            "PORTAL_HOST": "127.0.0.1", "PORTAL_PORT": str(self.port),
            # Only the watcher and what a test asks for may bring the inventory up to date.
            "PORTAL_RESYNC_SECONDS": "3600", "PORTAL_OPERATION_LOST_GRACE_SECONDS": "20",
            **(env or {}),
        })
        self.workers: list[subprocess.Popen] = []
        self.run = None

    # --- processes ------------------------------------------------------------------------------

    def manage(self, *args, env=None):
        proc = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def start(self):
        self.manage("migrate", "--noinput")
        self.manage("collectstatic", "--noinput", "-v0", env={"PORTAL_STATIC_ROOT": str(self.var / "static")})
        sandbox = self.sandbox
        self.password = "faults-" + secrets.token_hex(8)
        setup = {"password": self.password, "server": sandbox.endpoint, "ca_data": sandbox.ca_pem,
                 "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem}
        made = self.manage("shell", "-c", SETUP, env={"FAULTS_SETUP": json.dumps(setup)})
        made = json.loads(made.strip().splitlines()[-1])
        self.token, self.cluster_id, self.username = made["token"], made["cluster"], made["username"]
        self.env["PORTAL_STATIC_ROOT"] = str(self.var / "static")
        self.run = Supervisor([sys.executable, "tools/run.py", "web", "beat", "watch"], env=self.env,
                              log_path=self.var / "run.log")
        self.run.wait_for(lambda: self.answers("/healthz"), 60, "the web server")
        return self

    def answers(self, path):
        try:
            return requests.get(self.url + path, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def start_worker(self):
        log_path = self.var / f"worker-{len(self.workers)}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool=prefork",
                                     "--concurrency=1", "--loglevel=INFO", "-n", f"faults-{os.getpid()}-{len(self.workers)}@%h"],
                                    cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = log_path
        self.workers.append(proc)
        wait_for(lambda: "ready." in log_path.read_text(), 60, "the worker", lambda: log_path.read_text()[-3000:])
        return proc

    def kill_worker(self, proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the main process and its pool
        except ProcessLookupError:
            pass
        proc.wait()

    def watcher(self):
        return self.run.child("watch_clusters")

    def restart_redis(self):
        """Start the killed redis-server again: same directory, port and append-only file."""
        return services.ensure_redis(self.var)

    def stop_postgres(self):
        assert services.stop_postgres(self.var)

    def start_postgres(self):
        assert services.ensure_postgres(self.var) == self.database_url

    def stop(self):
        for proc in self.workers:
            if proc.poll() is None:
                self.kill_worker(proc)
        if self.run:
            self.run.kill()
        services.stop_redis(self.var)
        services.stop_postgres(self.var)

    # --- what the portal answers and holds --------------------------------------------------------

    def api(self, method, path, **kwargs):
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def browser_session(self):
        """A requests session signed in through the login form, as a person would be."""
        session = requests.Session()
        session.get(self.url + "/login/", timeout=10)
        answer = session.post(self.url + "/login/", timeout=10, allow_redirects=False,
                              data={"username": self.username, "password": self.password,
                                    "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                              headers={"Referer": self.url + "/login/"})
        assert answer.status_code == 302, answer.text[:2000]
        return session

    def sql(self, query, params=()):
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()

    def operation(self, pk):
        rows = self.sql("SELECT status, error, log FROM portal_operation WHERE id = %s", (pk,))
        status, error, log = rows[0]
        return {"status": status, "error": error, "log": [line["message"] for line in (log or [])]}

    def unfinished_operations(self):
        return self.sql("SELECT id, kind, status FROM portal_operation WHERE status IN ('pending', 'running')")

    def wait_for_operation(self, pk, timeout=120):
        return wait_for(lambda: (op := self.operation(pk))["status"] in ("succeeded", "failed") and op, timeout,
                        f"operation {pk} to finish", lambda: str(self.operation(pk)) + self.worker_logs())

    def worker_logs(self):
        return "".join(f"\n--- {p.log_path.name} ---\n{p.log_path.read_text()[-3000:]}" for p in self.workers)

    def differences(self):
        """What differs between the cluster's lists and the portal's rows (uid and resourceVersion)."""
        api, found = self.sandbox.api(), []
        for resource, (path, model, scope) in LISTS.items():
            listed = {o["metadata"]["uid"]: o["metadata"]["resourceVersion"] for o in api.get(path)["items"]}
            where = "".join(f" AND {field} = %s" for field in scope)
            stored = dict(self.sql(f"SELECT uid, resource_version FROM {model._meta.db_table} "  # noqa: S608 - names from the models
                                   f"WHERE cluster_id = %s AND uid <> ''{where}", (self.cluster_id, *scope.values())))
            for uid in listed.keys() - stored.keys():
                found.append(f"{resource} {uid} missing (cluster has version {listed[uid]})")
            for uid in stored.keys() - listed.keys():
                found.append(f"{resource} {uid} stored at version {stored[uid]} but gone from the cluster")
            for uid in listed.keys() & stored.keys():
                if listed[uid] != stored[uid] and resource != "nodes":
                    found.append(f"{resource} {uid} stored at version {stored[uid]}, cluster has {listed[uid]}")
        return found

    def assert_inventory_exact(self, timeout=60):
        """The portal's inventory equals the cluster's lists (within ``timeout``, for events in
        flight), and no operation is left pending or running."""
        found = []

        def equal():
            nonlocal found
            found = self.differences()
            return not found

        try:
            wait_for(equal, timeout, "the inventory to equal the cluster")
        except AssertionError:
            raise AssertionError(f"{len(found)} differences between Corral and the cluster:\n" + "\n".join(found[:40])
                                 + "\n--- run.log ---\n" + "\n".join(self.run.lines[-60:])) from None
        assert not self.unfinished_operations(), self.unfinished_operations()

SETUP = """
import json, os
from django.contrib.auth import get_user_model
from clusters.models import Cluster
from portal.models import ApiToken
spec = json.loads(os.environ["FAULTS_SETUP"])
admin = get_user_model().objects.create_superuser("faults-admin", "", spec["password"])
_, token = ApiToken.issue(admin, description="fault tests")
cluster = Cluster.objects.create(
    name="faults", driver="imported", state="active", api_endpoint=spec["server"],
    credentials={k: spec[k] for k in ("server", "ca_data", "client_cert", "client_key")},
)
print(json.dumps({"token": token, "cluster": cluster.pk, "username": admin.username}))
"""
