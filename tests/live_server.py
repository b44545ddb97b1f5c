"""The real ASGI server (daphne, as `make run` starts it) in its own process on the test database:
for tests that need real sockets (kubectl, streaming, websockets)."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager

from django.conf import settings as django_settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def daphne(tls_dir=None, **extra_env):
    """Yields (url, process); the server's log is kept in a file (a pipe nobody reads stalls it).
    With ``tls_dir`` it also serves HTTPS, as `make run` does (``process.tls_url``), and
    kubeconfigs name that URL and its CA."""
    db = django_settings.DATABASES["default"]
    port = free_port()
    tls_args, tls_url = [], None
    if tls_dir is not None:
        from portal.tls import daphne_endpoint, ensure_local_tls

        ca, cert, key = ensure_local_tls(tls_dir)
        tls_port = free_port()
        tls_url = f"https://127.0.0.1:{tls_port}"
        tls_args = ["-e", daphne_endpoint("127.0.0.1", tls_port, cert, key)]
        extra_env = {"PORTAL_EXTERNAL_URL": tls_url, "PORTAL_TLS_CA_FILE": str(ca), **extra_env}
    env = {**os.environ, "PORTAL_DB_CONN_MAX_AGE": "0",
           "PORTAL_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "PORTAL_REDIS_URL": django_settings.REDIS_URL, **extra_env}
    env.pop("PORTAL_DEBUG", None)
    log = tempfile.NamedTemporaryFile(prefix="daphne-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *tls_args, "portal.asgi:application"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"daphne did not start: {open(log.name).read()[-2000:]}") from None
            time.sleep(0.2)
    proc.log_path, proc.tls_url = log.name, tls_url
    try:
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)
