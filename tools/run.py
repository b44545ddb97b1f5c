"""Start the whole portal in the foreground: web (daphne, ASGI: HTTP + websockets), a Celery
worker, Celery beat and the cluster watcher.  Output is prefixed per process; Ctrl-C (or any process dying) stops all.

Used by `make run`; in production run the same three commands under your supervisor of choice
(see docker-compose.yml).
"""

import os
import signal
import subprocess
import sys
import threading
import time

PYTHON = sys.executable


def commands(host, port):
    return {
        "web": [PYTHON, "-m", "daphne", "-b", host, "-p", str(port), "portal.asgi:application"],
        "worker": [PYTHON, "-m", "celery", "-A", "portal", "worker", "--loglevel=INFO", "--concurrency=2"],
        "beat": [PYTHON, "-m", "celery", "-A", "portal", "beat", "--loglevel=INFO"],
        "watch": [PYTHON, "manage.py", "watch_clusters"],
    }


def pump(name, stream):
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>6} | {line.decode(errors='replace')}")
        sys.stdout.flush()


def main():
    host = os.environ.get("PORTAL_HOST", "127.0.0.1")
    port = int(os.environ.get("PORTAL_PORT", "8000"))
    procs = {}
    for name, argv in commands(host, port).items():
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        procs[name] = proc
        threading.Thread(target=pump, args=(name, proc.stdout), daemon=True).start()
    print(f"Corral is starting on http://{host}:{port}/  (Ctrl-C stops web, worker and beat)", flush=True)
    if os.environ.get("PORTAL_DEBUG", "").strip().lower() in ("1", "true", "yes", "on"):
        print("PORTAL_DEBUG is on: every error page shows settings and local variables; keep it off on a shared host",
              flush=True)

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with code {proc.returncode}; stopping the others", flush=True)
                exit_code = proc.returncode or 1
                stopping = True
                break
        time.sleep(0.5)
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.time() + 15
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
