"""Start the whole portal in the foreground: web (daphne, ASGI: HTTP + websockets), a Celery
worker, Celery beat and the cluster watcher.  Output is prefixed per process.

A process that dies is started again, as a process supervisor would: at once the first time, then
after a back-off that doubles (up to 30 s) while it keeps dying within a minute of its start, with a
line saying so.  Ctrl-C (SIGINT) or SIGTERM stops them all, then the private services `make run`
started for them (named in $CORRAL_RUN_STOPS: ``redis``, ``postgres-durable``; their data stays
under $CORRAL_VAR_DIR for the next start).

Used by `make run`; `python tools/run.py watch worker` runs only the named ones.  In production run
the same commands under your supervisor of choice (see docker-compose.yml).
"""

import os
import signal
import subprocess
import sys
import threading
import time

PYTHON = sys.executable
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
STABLE_SECONDS = 60  # a process that ran this long before dying is restarted at once again


def local_tls(host):
    """HTTPS beside HTTP: kubectl sends a kubeconfig's token only over TLS.  A private CA and a
    certificate for the loopback names are made once under var/tls/; kubeconfigs name this URL
    and embed the CA unless PORTAL_EXTERNAL_URL / PORTAL_TLS_CA_FILE say otherwise."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from portal.tls import daphne_endpoint, ensure_local_tls

    var = Path(os.environ.get("CORRAL_VAR_DIR") or Path(__file__).resolve().parents[1] / "var")
    tls_port = int(os.environ.get("PORTAL_TLS_PORT", "8443"))
    names = ("127.0.0.1", "localhost", "::1") if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0") else (host, "127.0.0.1", "localhost")
    ca, cert, key = ensure_local_tls(var / "tls", hosts=names)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    os.environ.setdefault("PORTAL_EXTERNAL_URL", f"https://{shown}:{tls_port}")
    if os.environ["PORTAL_EXTERNAL_URL"] == f"https://{shown}:{tls_port}":
        os.environ.setdefault("PORTAL_TLS_CA_FILE", str(ca))
    return ["-e", daphne_endpoint(host, tls_port, cert, key)], tls_port


def commands(host, port, tls_args=()):
    return {
        "web": [PYTHON, "-m", "daphne", "-b", host, "-p", str(port), *tls_args, "portal.asgi:application"],
        "worker": [PYTHON, "-m", "celery", "-A", "portal", "worker", "--loglevel=INFO", "--concurrency=2"],
        "beat": [PYTHON, "-m", "celery", "-A", "portal", "beat", "--loglevel=INFO"],
        "watch": [PYTHON, "manage.py", "watch_clusters"],
    }


def say(message):
    sys.stdout.write(f"{'run':>6} | {message}\n")
    sys.stdout.flush()


def pump(name, stream):
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>6} | {line.decode(errors='replace')}")
        sys.stdout.flush()


class Child:
    """One supervised process: started, watched, started again after it dies."""

    def __init__(self, name, argv):
        self.name, self.argv = name, argv
        self.proc = None
        self.started = 0.0
        self.restart_at = None
        self.delay = 0.0
        self.restarts = 0

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()
        self.restart_at = None
        threading.Thread(target=pump, args=(self.name, self.proc.stdout), daemon=True).start()

    def check(self, now):
        """Notice a death and schedule the restart; restart when its time has come."""
        if self.restart_at is None and self.proc.poll() is not None:
            self.kill_leftovers()
            ran = now - self.started
            self.delay = 0.0 if ran >= STABLE_SECONDS else min(BACKOFF_MAX, max(BACKOFF_FIRST, self.delay * 2))
            self.restart_at = now + self.delay
            self.restarts += 1
            say(f"{self.name} exited with code {self.proc.returncode} after {ran:.0f}s; "
                f"restarting it in {self.delay:.0f}s (restart {self.restarts})")
        if self.restart_at is not None and now >= self.restart_at:
            self.start()
            say(f"{self.name} restarted (pid {self.proc.pid})")

    def kill_leftovers(self):
        """What the dead process left in its process group (a killed Celery worker's pool
        processes) would run beside its successor: stop it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def wait_or_kill(self, deadline):
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def supervise(named_commands, banner=None):
    """Run ``{name: argv}`` until SIGINT or SIGTERM, restarting whichever dies; returns 0."""
    stopping = threading.Event()

    def stop(*_):
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    children = [Child(name, argv) for name, argv in named_commands.items()]
    for child in children:
        child.start()
    if banner:
        say(banner)
    while not stopping.wait(0.25):
        now = time.monotonic()
        for child in children:
            child.check(now)
    say("stopping " + ", ".join(child.name for child in children))
    for child in children:
        child.terminate()
    deadline = time.monotonic() + 15
    for child in children:
        child.wait_or_kill(deadline)
    return 0


def main(argv=None):
    names = (sys.argv[1:] if argv is None else argv)
    host = os.environ.get("PORTAL_HOST", "127.0.0.1")
    port = int(os.environ.get("PORTAL_PORT", "8000"))
    tls_args, tls_port = local_tls(host) if not names or "web" in names else ((), None)
    everything = commands(host, port, tls_args)
    unknown = set(names) - set(everything)
    if unknown:
        say(f"unknown process(es): {', '.join(sorted(unknown))}; choose from {', '.join(everything)}")
        return 2
    chosen = {name: cmd for name, cmd in everything.items() if not names or name in names}
    if os.environ.get("PORTAL_DEBUG", "").strip().lower() in ("1", "true", "yes", "on"):
        say("PORTAL_DEBUG is on: every error page shows settings and local variables; keep it off on a shared host")
    https = f" and https://{host}:{tls_port}/ (kubectl)" if tls_port else ""
    stops = os.environ.get("CORRAL_RUN_STOPS", "").split()
    return supervise_then_stop(chosen, stops, banner=f"Corral is starting on http://{host}:{port}/{https}  (Ctrl-C stops "
                                                     f"{', '.join([*chosen, *stops])}; any of them that dies is started again)")


def supervise_then_stop(named_commands, stops, banner=None):
    """``supervise``, then stop the private services named in ``stops``."""
    try:
        return supervise(named_commands, banner=banner)
    finally:
        stop_services(stops)


def running_sandboxes():
    """Sandbox clusters still running under this run's state directory: clusters, not part of the
    portal, so they outlive a stop (Corral has no way to start a stopped one again), but said so."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        from clusters.sandbox import Sandbox, default_root

        root = default_root()
        names = sorted(p.parent.name for p in root.glob("*/sandbox.json")) if root.is_dir() else []
        return root, [name for name in names if Sandbox(name, root).is_running()]
    except Exception:  # noqa: BLE001 - a note at stop time must not keep the rest from stopping
        return None, []


def stop_services(names):
    """Stop the private services `make run` started (its data stays for the next start)."""
    root, sandboxes = running_sandboxes()
    if sandboxes:
        say(f"sandbox clusters left running (their processes belong to the clusters): {', '.join(sandboxes)}; "
            f"remove them in the portal, or `manage.py sandbox down NAME` (state under {root})")
    if not names:
        return
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tools import services

    var = services.default_var_dir()
    for name in names:
        try:
            if name == "redis":
                stopped = services.stop_redis(var)
            elif name == "postgres-durable":
                stopped = services.stop_postgres(var, durable=True)
            else:
                continue
            say(f"{name} {'stopped' if stopped else 'was not running'} ({var})")
        except Exception as exc:  # noqa: BLE001 - say so and go on stopping the rest
            say(f"could not stop {name}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
