"""Private PostgreSQL, Redis and OpenLDAP instances for `make run`, `make test` and CI.

Each service is a private instance of the Debian package's server, kept under the repo's
`var/` directory and listening on a free 127.0.0.1 port. The system-wide instances are never
touched. A second `ensure_*` call finds the running instance (pidfile + port file) and reuses it.

Two PostgreSQL instances: the tests' throwaway one (`var/postgres`, durability off for speed) and,
with `--durable`, the one `make run` keeps the portal's data in (`var/postgres-durable`, fsync and
synchronous commits on).  Redis keeps its data in an append-only file, so queued tasks survive a
restart, and never evicts keys (Celery's queues live there).

    python -m tools.services up [--durable] postgres redis [slapd]   # prints `export PORTAL_..._URL=...`
    python -m tools.services status
    python -m tools.services down

No Django imports here: the Makefile and CI call this before Django is configured.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DB_NAME = "corral"
DB_USER = "corral"
START_TIMEOUT = 30.0


class ServiceError(RuntimeError):
    """A private service could not be installed, started or reached."""


# --- helpers shared by every service -------------------------------------------------------

def default_var_dir() -> Path:
    return Path(os.environ.get("CORRAL_VAR_DIR") or REPO / "var").resolve()


def free_port(preferred: int | None = None) -> int:
    """A TCP port on 127.0.0.1 that nobody listens on; `preferred` if it is still free."""
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) still answers kill(0); it is not running.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(check, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    tail = f"\n--- last lines of {log} ---\n{log_tail(log)}" if log else ""
    raise ServiceError(f"{what} not ready after {timeout:.0f}s{tail}")


@contextlib.contextmanager
def locked(directory: Path):
    """Serialise ensure/stop of one service between processes (pytest workers, make)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def run(cmd: list[str], *, user: str | None = None, check: bool = True, **kwargs):
    """Run a command, as `user` (via runuser) when we are root and it differs."""
    if user and os.geteuid() == 0 and user != "root":
        cmd = ["runuser", "-u", user, "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise ServiceError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )
    return proc


def require_binary(path_or_name: str, package: str) -> str:
    """The binary's path, installing the Debian package first if we are root."""
    def find() -> str | None:
        if os.path.isabs(path_or_name):
            return path_or_name if os.access(path_or_name, os.X_OK) else None
        return shutil.which(path_or_name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")

    found = find()
    if found:
        return found
    apt_install(package)
    found = find()
    if not found:
        raise ServiceError(f"{path_or_name} still missing after installing {package}")
    return found


def apt_install(*packages: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceError(
            f"missing Debian package(s): {' '.join(packages)}; "
            f"install them with: sudo apt-get install -y {' '.join(packages)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    print(f"tools.services: installing {' '.join(packages)}", file=sys.stderr)
    if subprocess.run(cmd, env=env, stdout=sys.stderr, check=False).returncode == 0:
        return
    # A fresh container often has no package lists yet.
    subprocess.run(["apt-get", "update"], env=env, stdout=sys.stderr, check=False)
    if subprocess.run(cmd, env=env, stdout=sys.stderr, check=False).returncode != 0:
        raise ServiceError(f"apt-get install {' '.join(packages)} failed")


def service_user(preferred: str) -> str | None:
    """Who owns and runs a server that refuses root: `preferred` if it exists, else `corral`."""
    if os.geteuid() != 0:
        return None
    for name in (preferred, "corral"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "corral"])
    return "corral"


def chown_tree(path: Path, user: str | None) -> None:
    if not user:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in files + dirs:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


# The program each pidfile belongs to: a stale pidfile whose number now names some other process
# (pids wrap around) must never get that process signalled.
PIDFILE_PROGRAMS = {"slapd.pid": "slapd", "redis.pid": "redis-server", "postmaster.pid": "postgres"}


def pid_is(pid: int | None, program: str | None) -> bool:
    """Is `pid` a live process running `program` (by its /proc comm name)?"""
    if not pid_alive(pid):
        return False
    if program is None:
        return True
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip() == program[:15]
    except OSError:
        return False


def stop_pid(pidfile: Path, timeout: float = 15.0) -> bool:
    """SIGTERM the process in `pidfile` (waking it first if paused); True if it was running.
    A pidfile naming a process of another program is stale: it is removed, nothing is signalled."""
    pid = read_int(pidfile)
    if not pid_is(pid, PIDFILE_PROGRAMS.get(pidfile.name)):
        pidfile.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGCONT)  # a SIGSTOPped server only sees SIGTERM once continued
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return True


# --- PostgreSQL ----------------------------------------------------------------------------

PG_TUNING = """
# Private cluster (tools/services.py).
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 64MB
log_min_messages = warning
log_line_prefix = '%m [%p] '
"""
PG_THROWAWAY = """
# Throwaway test cluster: durability off, speed on.
fsync = off
synchronous_commit = off
full_page_writes = off
"""


def pg_bindir() -> Path:
    versions = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    versions = sorted(v for v in versions if v.parent.name.isdigit())
    if not versions:
        apt_install("postgresql")
        return pg_bindir()
    return max(versions, key=lambda bindir: int(bindir.parent.name))


def postgres_url(port: int) -> str:
    return f"postgresql://{DB_USER}@127.0.0.1:{port}/{DB_NAME}"


def postgres_home(var: Path, durable: bool = False) -> Path:
    return Path(var).resolve() / ("postgres-durable" if durable else "postgres")


def ensure_postgres(var: Path, durable: bool = False) -> str:
    """URL of a private PostgreSQL, started (and initialised) if needed: the tests' throwaway one
    under var/postgres, or with ``durable`` the portal's own under var/postgres-durable."""
    home = postgres_home(var, durable)
    with locked(home):
        bindir = pg_bindir()
        data, run_dir, log = home / "data", home / "run", home / "postgres.log"
        user = service_user("postgres")
        port = read_int(home / "port")
        if port and pg_running(data):
            wait_until(lambda: pg_ready(bindir, port), START_TIMEOUT, "postgres", log)
            return postgres_url(port)
        run_dir.mkdir(parents=True, exist_ok=True)
        chown_tree(home, user)
        if user and run(["test", "-w", str(home)], user=user, check=False).returncode:
            raise ServiceError(f"user {user} cannot reach {home}: make its parent directories "
                               "traversable (chmod o+x) or set CORRAL_VAR_DIR elsewhere")
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir()
            chown_tree(data, user)
            run([str(bindir / "initdb"), "-D", str(data), "-U", DB_USER, "--auth=trust",
                 "-E", "UTF8", "--no-locale", "--no-sync"], user=user)
            with open(data / "postgresql.conf", "a") as conf:
                conf.write(PG_TUNING if durable else PG_TUNING + PG_THROWAWAY)
        port = free_port(port)
        (home / "port").write_text(f"{port}\n")
        options = f"-p {port} -k {run_dir}"
        proc = run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                    "-w", "-t", str(int(START_TIMEOUT)), "start"], user=user, check=False)
        if proc.returncode != 0:
            raise ServiceError(f"postgres failed to start:\n{proc.stdout}{proc.stderr}\n"
                               f"--- last lines of {log} ---\n{log_tail(log)}")
        wait_until(lambda: pg_ready(bindir, port), START_TIMEOUT, "postgres", log)
        psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER,
                "-d", "postgres", "-tAc"]
        exists = run(psql + [f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"]).stdout
        if exists.strip() != "1":
            run(psql + [f'CREATE DATABASE "{DB_NAME}"'])
        return postgres_url(port)


def pg_running(data: Path) -> bool:
    return pid_alive(read_int(data / "postmaster.pid"))


def pg_ready(bindir: Path, port: int) -> bool:
    proc = subprocess.run([str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
                          capture_output=True, check=False)
    return proc.returncode == 0


def stop_postgres(var: Path, durable: bool = False) -> bool:
    home = postgres_home(var, durable)
    data = home / "data"
    if not pg_running(data):
        return False
    with locked(home):
        run([str(pg_bindir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            user=service_user("postgres"), check=False)
        return True


# --- Redis ---------------------------------------------------------------------------------

def redis_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_command(port: int, *args: str) -> bytes:
    """Send one command (RESP) and return the raw reply."""
    request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        return sock.recv(4096)


# Queued Celery tasks and the websocket layer live in Redis: keep them across restarts (append-only
# file, fsync every second) and never evict a key to make room (a queue would lose tasks).
REDIS_PERSISTENCE = {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"}


def ensure_redis(var: Path) -> str:
    """URL of a private redis-server under var/redis (daemonized, append-only file on)."""
    home = Path(var).resolve() / "redis"
    with locked(home):
        pidfile, log = home / "redis.pid", home / "redis.log"
        port = read_int(home / "port")
        if port and pid_is(read_int(pidfile), "redis-server") and redis_ping(port):
            for key, value in REDIS_PERSISTENCE.items():  # a server started before persistence was on
                redis_command(port, "CONFIG", "SET", key, value)
            return redis_url(port)
        stop_pid(pidfile)
        binary = require_binary("redis-server", "redis-server")
        port = free_port(port)
        (home / "port").write_text(f"{port}\n")
        (home / "redis.conf").write_text(
            "# Throwaway instance written by tools/services.py\n"
            f"bind 127.0.0.1\nport {port}\nprotected-mode yes\n"
            f"daemonize yes\npidfile {pidfile}\nlogfile {log}\ndir {home}\n"
            'save ""\n' + "".join(f"{key} {value}\n" for key, value in REDIS_PERSISTENCE.items())
        )
        run([binary, str(home / "redis.conf")])
        wait_until(lambda: redis_ping(port), START_TIMEOUT, "redis", log)
        return redis_url(port)


def stop_redis(var: Path) -> bool:
    home = Path(var).resolve() / "redis"
    with locked(home):
        return stop_pid(home / "redis.pid")


# --- OpenLDAP (details in tools/ldapdir.py, which needs python-ldap) ----------------------

def ensure_slapd(var: Path, directory: dict | None = None, *, name: str = "default",
                 fresh: bool = False):
    """A private slapd serving a generated directory: a tools.ldapdir.LdapServer.

    Imported lazily: only slapd needs python-ldap and cryptography.
    """
    from tools import ldapdir

    return ldapdir.ensure_slapd(var, directory, name=name, fresh=fresh)


def stop_slapds(var: Path) -> list[str]:
    stopped = []
    for home in sorted(Path(var).resolve().glob("slapd-*")):
        if home.is_dir() and stop_pid(home / "slapd.pid"):
            stopped.append(home.name)
    return stopped


def stop_all(var: Path) -> list[str]:
    """Stop every service started under `var`; returns the names of those that were running.

    Also stops instances in var dirs nested one level down (tests make their own there)
    whose owner died before cleaning up.
    """
    var = Path(var).resolve()
    stopped = stop_services(var)
    for nested in sorted(p for p in var.glob("*/") if not is_service_dir(p)):
        if any(is_service_dir(p) for p in nested.glob("*/")):
            stopped += [f"{nested.name}/{name}" for name in stop_services(nested)]
    return stopped


def is_service_dir(path: Path) -> bool:
    return path.name in ("postgres", "postgres-durable", "redis") or path.name.startswith("slapd-")


def stop_services(var: Path) -> list[str]:
    stopped = []
    if (var / "postgres").is_dir() and stop_postgres(var):
        stopped.append("postgres")
    if (var / "postgres-durable").is_dir() and stop_postgres(var, durable=True):
        stopped.append("postgres-durable")
    if (var / "redis").is_dir() and stop_redis(var):
        stopped.append("redis")
    return stopped + stop_slapds(var)


def status(var: Path) -> dict[str, str]:
    var = Path(var).resolve()
    result = {}
    for name in ("postgres", "postgres-durable"):
        port = read_int(var / name / "port")
        if (var / name).is_dir():
            up = port and pg_running(var / name / "data") and port_accepts(port)
            result[name] = postgres_url(port) if up else "stopped"
    port = read_int(var / "redis" / "port")
    if (var / "redis").is_dir():
        up = port and pid_alive(read_int(var / "redis" / "redis.pid")) and redis_ping(port)
        result["redis"] = redis_url(port) if up else "stopped"
    for home in sorted(var.glob("slapd-*")):
        port = read_int(home / "port")
        up = port and pid_alive(read_int(home / "slapd.pid")) and port_accepts(port)
        result[home.name] = f"ldap://127.0.0.1:{port}" if up else "stopped"
    return result


# --- CLI -----------------------------------------------------------------------------------

def env_lines(var: Path, services: list[str], durable: bool = False) -> list[str]:
    lines = []
    if "postgres" in services:
        lines.append(("PORTAL_DATABASE_URL", ensure_postgres(var, durable)))
    if "redis" in services:
        lines.append(("PORTAL_REDIS_URL", ensure_redis(var)))
    if "slapd" in services:
        lines += ensure_slapd(var).env().items()
    return [f"export {key}={shlex.quote(value)}" for key, value in lines]


def write_env_file(path: Path, lines: list[str]) -> None:
    """Merge `export KEY=...` lines into the file, so `up postgres` then `up redis` keeps both."""
    merged = {}
    if path.exists():
        merged = {line.split("=", 1)[0]: line for line in path.read_text().splitlines()
                  if line.startswith("export ")}
    merged.update({line.split("=", 1)[0]: line for line in lines})
    path.write_text("".join(f"{line}\n" for line in merged.values()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.services", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--var", type=Path, default=None,
                        help="state directory (default: $CORRAL_VAR_DIR or <repo>/var)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start services, print export lines for eval")
    up.add_argument("services", nargs="*", metavar="SERVICE",
                    help="postgres, redis, slapd (default: postgres redis)")
    up.add_argument("--durable", action="store_true",
                    help="the portal's own PostgreSQL (var/postgres-durable), not the tests' throwaway one")
    sub.add_parser("down", help="stop every service started under the var dir")
    sub.add_parser("status", help="show what is running")
    args = parser.parse_args(argv)
    unknown = set(getattr(args, "services", None) or ()) - {"postgres", "redis", "slapd"}
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    var = (args.var or default_var_dir()).resolve()
    var.mkdir(parents=True, exist_ok=True)
    try:
        if args.command == "up":
            lines = env_lines(var, args.services or ["postgres", "redis"], args.durable)
            if not args.durable:
                write_env_file(var / "services.env", lines)
            print("\n".join(lines))
        elif args.command == "down":
            stopped = stop_all(var)
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}", file=sys.stderr)
        else:
            for name, state in (status(var) or {"services": "none started"}).items():
                print(f"{name}: {state}")
    except ServiceError as error:
        print(f"tools.services: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
