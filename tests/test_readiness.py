"""/healthz, /readyz and the liveness of the worker, beat and the watcher (portal/health.py,
portal/liveness.py, portal/beat.py), against real services: a redis-server this test starts and
stops, the suite's PostgreSQL with a migration really unrecorded, a real Celery worker and two real
beats."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client

from tests.waiting import wait_for
from tools import services

ROOT = Path(__file__).resolve().parents[1]


def test_healthz_answers_any_host_without_asking_any_service(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing there; /healthz must not care
    settings.SECURE_SSL_REDIRECT = True
    response = Client(HTTP_HOST="10.244.3.17:8000").get("/healthz")  # a kubelet sends the pod's IP
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_readyz_is_ready_with_every_service_up(db):
    response = Client(HTTP_HOST="10.244.3.17").get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok", "migrations": "ok"}}


def test_readyz_names_redis_when_it_is_stopped(db, settings, tmp_path):
    url = services.ensure_redis(tmp_path)
    settings.REDIS_URL = url
    try:
        assert Client().get("/readyz").status_code == 200
        assert services.stop_redis(tmp_path)
        response = Client().get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready" and body["not_ready"] == ["Redis"]
        assert body["checks"]["redis"].startswith("cannot reach Redis: ")
        assert body["checks"]["database"] == "ok" and body["checks"]["migrations"] == "ok"
        services.ensure_redis(tmp_path)
        assert Client().get("/readyz").status_code == 200  # back by itself
    finally:
        services.stop_redis(tmp_path)


def test_readyz_names_an_unapplied_migration(db):
    leaf = max(node for node in MigrationLoader(connection).graph.leaf_nodes() if node[0] == "clusters")
    deleted, _ = MigrationRecorder(connection).migration_qs.filter(app=leaf[0], name=leaf[1]).delete()
    assert deleted == 1
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["not_ready"] == ["migrations"]
    assert body["checks"]["migrations"] == f"1 not applied: {leaf[0]}.{leaf[1]}; run manage.py migrate"


def test_readyz_names_the_database_when_it_is_unreachable(db, settings):
    connection.close()
    real = connection.settings_dict.copy()
    connection.settings_dict.update(PORT=str(services.free_port()))
    try:
        body = Client().get("/readyz").json()
    finally:
        connection.close()
        connection.settings_dict.update(real)
    assert body["not_ready"] == ["the database", "migrations"]
    assert body["checks"]["database"].startswith("cannot reach the database: ")
    assert body["checks"]["redis"] == "ok"


def test_alive_says_missing_fresh_and_stale(settings, tmp_path, capsys):
    settings.LIVENESS_DIR = tmp_path
    with pytest.raises(SystemExit) as exit_:
        call_command("alive", component="worker")
    assert exit_.value.code == 1 and "worker: no heartbeat yet" in capsys.readouterr().err
    (tmp_path / "worker").touch()
    call_command("alive", component="worker")
    assert "worker: alive" in capsys.readouterr().out
    old = time.time() - 120
    os.utime(tmp_path / "worker", (old, old))
    with pytest.raises(SystemExit):
        call_command("alive", component="worker")
    assert "last heartbeat 120s ago (more than 60s" in capsys.readouterr().err


def subprocess_env(settings, liveness_dir):
    db = settings.DATABASES["default"]
    return {**os.environ, "PORTAL_DB_CONN_MAX_AGE": "0", "PORTAL_LIVENESS_DIR": str(liveness_dir),
            "PORTAL_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "PORTAL_REDIS_URL": settings.REDIS_URL}


def alive_now(directory, component, max_age=60):
    """What `manage.py alive` decides, in-process (one test runs the command itself)."""
    from django.test import override_settings

    from portal import liveness

    with override_settings(LIVENESS_DIR=directory):
        return liveness.check(component, max_age)[0]


def alive(env, component, max_age=60):
    return subprocess.run([sys.executable, "manage.py", "alive", "--component", component, "--max-age", str(max_age)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_is_alive_until_it_hangs(settings, tmp_path):
    env = subprocess_env(settings, tmp_path)
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "portal", "worker", "--concurrency=1", "--loglevel=INFO",
                               "-Q", f"readiness-{os.getpid()}", "-n", f"readiness-{os.getpid()}@%h"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (tmp_path / "worker").exists(), 60, "the worker's heartbeat")
        answer = alive(env, "worker")
        assert answer.returncode == 0 and "worker: alive" in answer.stdout, answer.stderr
        worker.send_signal(signal.SIGSTOP)  # hung: its event loop turns no more
        time.sleep(2.5)
        assert not alive_now(tmp_path, "worker", max_age=2)
        worker.send_signal(signal.SIGCONT)
        stop(worker)
        assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-2000:]
        assert not alive_now(tmp_path, "worker")  # a worker that stopped says so at once
    finally:
        stop(worker)


@pytest.mark.django_db(transaction=True)
def test_only_one_beat_sends_and_a_second_takes_over(settings, tmp_path):
    from portal.locks import is_held

    assert not is_held("beat")
    beats, logs, dirs = [], [], []
    for name in ("a", "b"):  # started together: one of them gets the lease
        logs.append(tmp_path / f"{name}.log")
        dirs.append(tmp_path / name)
        beats.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel=INFO",
             "--pidfile=", f"--schedule={tmp_path / name}.db"],
            cwd=ROOT, env=subprocess_env(settings, dirs[-1]), stdout=open(logs[-1], "w"), stderr=subprocess.STDOUT))
    try:
        said = lambda i, what: what in logs[i].read_text()  # noqa: E731
        holder = wait_for(lambda: [i for i in (0, 1) if said(i, "holding the lease")], 60, "a beat to hold the lease")
        assert len(holder) == 1
        holder, other = holder[0], 1 - holder[0]
        wait_for(lambda: said(other, "another beat holds the lease; standing by"), 60, "the other beat to stand by")
        assert not said(other, "holding the lease")
        for directory in dirs:  # both tick, so both are alive
            wait_for(lambda d=directory: alive_now(d, "beat"), 30, "beat's heartbeat")
        stop(beats[holder])  # a clean stop hands the lease back
        wait_for(lambda: said(other, "holding the lease"), 30, "the other beat to take over")
        assert not alive_now(dirs[holder], "beat")
    finally:
        for beat in beats:
            stop(beat)
    assert not is_held("beat")
