"""A private Docker daemon and locally made base images, for the container tests (tests/test_compose.py).

    python -m tools.docker up       start dockerd under var/docker/ (root; prints `export DOCKER_HOST=...`)
    python -m tools.docker base     make the Debian base image (cached) and load it into that daemon
    python -m tools.docker images   and build Corral's image on it
    python -m tools.docker down     stop that dockerd

No registry is reachable here, so nothing is pulled: the base image is a Debian bookworm root
filesystem made by debootstrap from this machine's apt mirror, with the Debian packages the test
images need (Python for Corral's image; PostgreSQL, Redis and OpenLDAP for the services), and
`docker import`ed.  Its tarball is cached under ~/.cache/corral/docker/ by a key over everything
that goes into it, so CI makes it once.  dockerd (Debian's docker.io) runs with the vfs storage
driver (no overlay mounts needed), its own data, exec root and socket under var/docker/, no
default bridge and no iptables rules: the test's containers use the host's network.
"""

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools import services

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("CORRAL_DOCKER_CACHE", Path.home() / ".cache" / "corral" / "docker"))
SUITE = "bookworm"
# What the test images need, from Debian: Python and the LDAP/SASL libraries for Corral's image
# (its Python packages are wheels built on this bookworm host), and the three services.
PACKAGES = ("python3", "python3-venv", "libldap-2.5-0", "libsasl2-2", "ca-certificates",
            "postgresql-15", "redis-server", "slapd", "ldap-utils")
TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale",
        "usr/share/info", "var/lib/postgresql/15/main")
BASE_REPOSITORY = "corral-test/debian"
RECIPE_VERSION = "1"  # bump when the way the root filesystem is made changes


class DockerError(RuntimeError):
    pass


def say(message):
    print(f"docker: {message}", file=sys.stderr, flush=True)


def var_dir() -> Path:
    return services.default_var_dir() / "docker"


def socket_path(var: Path | None = None) -> Path:
    return (var or var_dir()) / "docker.sock"


def docker_host(var: Path | None = None) -> str:
    return f"unix://{socket_path(var)}"


def docker_binary() -> str:
    # Debian's docker.io client; never another docker on PATH that may talk to some other daemon.
    return "/usr/bin/docker"


def compose_command() -> list[str]:
    if subprocess.run([docker_binary(), "compose", "version"], capture_output=True).returncode == 0:
        return [docker_binary(), "compose"]
    found = shutil.which("docker-compose")
    if found:
        return [found]
    raise DockerError("neither `docker compose` nor docker-compose is installed (apt-get install docker-compose)")


def mirror() -> str:
    """The Debian mirror apt uses on this machine (deb822 sources or sources.list)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2 and "security" not in words[-2]:
                return next(w for w in words[1:] if w.startswith("http"))
    return "http://deb.debian.org/debian"


def base_key() -> str:
    recipe = "\n".join([RECIPE_VERSION, SUITE, mirror(), *PACKAGES, "trim", *TRIM])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def base_image() -> str:
    return f"{BASE_REPOSITORY}:{SUITE}-{base_key()}"


def rootfs_tarball() -> Path:
    """The cached root filesystem tarball, made by debootstrap when missing."""
    tarball = CACHE / f"debian-{SUITE}-{base_key()}.tar"
    if tarball.exists():
        return tarball
    for tool in ("debootstrap", "tar"):
        if not shutil.which(tool):
            raise DockerError(f"{tool} is not installed (apt-get install {tool})")
    CACHE.mkdir(parents=True, exist_ok=True)
    with services.locked(CACHE):
        if tarball.exists():
            return tarball
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as tmp:
            root = Path(tmp) / "root"
            say(f"debootstrap {SUITE} from {mirror()} with {', '.join(PACKAGES)} (a few minutes, once) ...")
            result = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), mirror()],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise DockerError(f"debootstrap failed: {(result.stdout + result.stderr)[-2000:]}")
            pack(root, tarball)
        say(f"root filesystem made in {time.monotonic() - started:.0f}s: {tarball} ({tarball.stat().st_size >> 20} MiB)")
    return tarball


def pack(root: Path, tarball: Path) -> None:
    """Trim what no container needs (downloaded packages, docs, the cluster postgresql's postinst
    made) and write the tarball."""
    for part in TRIM:
        shutil.rmtree(root / part, ignore_errors=True)
    for kept in ("var/cache/apt/archives/partial", "var/lib/apt/lists/partial"):  # apt expects them
        (root / kept).mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".tmp")
    subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True)
    partial.rename(tarball)


def docker(*args, host: str | None = None, check: bool = True, capture: bool = True, timeout: float | None = None, **kwargs):
    env = {**os.environ, "DOCKER_HOST": host or docker_host()}
    env.pop("DOCKER_CONTEXT", None)
    result = subprocess.run([docker_binary(), *map(str, args)], env=env, capture_output=capture, text=True,
                            timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise DockerError(f"docker {' '.join(map(str, args))} failed: {((result.stdout or '') + (result.stderr or ''))[-3000:]}")
    return result


def ensure_base(host: str | None = None) -> str:
    """The base image in the daemon (imported from the cached tarball when missing)."""
    image = base_image()
    if docker("image", "inspect", image, host=host, check=False).returncode == 0:
        return image
    tarball = rootfs_tarball()
    started = time.monotonic()
    docker("import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["/bin/bash"]', tarball, image, host=host, timeout=900)
    say(f"imported {image} in {time.monotonic() - started:.0f}s")
    return image


# What the image's Python (Debian bookworm's 3.11.2) needs beyond this host's (maybe a later 3.11):
# redis requires async-timeout below 3.11.3.
BOOKWORM_EXTRAS = ("async-timeout>=4.0.3",)


def wheelhouse() -> Path:
    """Wheels of requirements.txt built on this host (a bookworm, like the image; cached by the
    file's hash): the image installs them without reaching PyPI from a container."""
    requirements = REPO / "requirements.txt"
    key = hashlib.sha256(requirements.read_bytes() + " ".join(BOOKWORM_EXTRAS).encode()
                         + sys.version.split()[0].encode()).hexdigest()[:16]
    target = CACHE / f"wheels-{key}"
    if (target / ".complete").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with services.locked(CACHE):
        if not (target / ".complete").exists():
            started = time.monotonic()
            say("building the wheels of requirements.txt ...")
            result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(target), "-r", str(requirements),
                                     *BOOKWORM_EXTRAS],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise DockerError(f"pip wheel failed: {(result.stdout + result.stderr)[-2000:]}")
            (target / ".complete").touch()
            say(f"wheels built in {time.monotonic() - started:.0f}s: {target}")
    return target


class WheelServer:
    """The wheelhouse over HTTP on 127.0.0.1 for a `docker build --network host` (pip's find-links)."""

    def __init__(self, directory: Path):
        # The same port each time when it is free: its URL is a build argument, and a different
        # one would invalidate Docker's cache of the pip install layer.
        self.port = services.free_port(20000 + int(hashlib.sha256(str(REPO).encode()).hexdigest(), 16) % 20000)
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(self.port)],
                                     cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        services.wait_until(lambda: services.port_accepts(self.port), 20, "the wheel server")

    def build_args(self) -> list[str]:
        url = f"http://127.0.0.1:{self.port}/"
        return ["--build-arg", "BUILD_PACKAGES=", "--build-arg", "PIP_NO_INDEX=1",
                "--build-arg", f"PIP_FIND_LINKS={url}", "--build-arg", "PIP_TRUSTED_HOST=127.0.0.1"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)


CORRAL_IMAGE = "corral:latest"


def build_images(host: str | None = None) -> dict:
    """Build Corral's image (the repository's Dockerfile) on the base; returns the seconds it took
    (Docker's layer cache makes a rebuild quick).  The services run on the base itself
    (docker-compose.test.yml)."""
    base = ensure_base(host)
    timings = {}
    with WheelServer(wheelhouse()) as wheels:
        started = time.monotonic()
        say(f"building {CORRAL_IMAGE} on {base} ...")
        docker("build", "--force-rm", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", *wheels.build_args(),
               "-t", CORRAL_IMAGE, REPO, host=host, timeout=1800)
        timings["corral"] = time.monotonic() - started
    say("built " + ", ".join(f"{name} in {seconds:.0f}s" for name, seconds in timings.items()))
    return timings


def up(var: Path | None = None, extra_args: tuple[str, ...] = ()) -> str:
    """Start the private dockerd (once) and return its DOCKER_HOST; ``extra_args`` go to dockerd
    (tests/swarm_fixtures.py adds a TLS tcp listener)."""
    var = var or var_dir()
    if os.geteuid() != 0:
        raise DockerError("dockerd must run as root here (no rootless setup)")
    if not Path("/usr/sbin/dockerd").exists() or not Path(docker_binary()).exists():
        raise DockerError("Debian's docker.io is not installed (apt-get install docker.io)")
    var.mkdir(parents=True, exist_ok=True)
    host = docker_host(var)
    pidfile = var / "dockerd.pid"
    if services.pid_alive(services.read_int(pidfile)) and docker("version", host=host, check=False).returncode == 0:
        return host
    log = var / "dockerd.log"
    with open(log, "ab") as out:
        subprocess.Popen(
            ["/usr/sbin/dockerd", "--storage-driver=vfs", f"--data-root={var / 'data'}", f"--exec-root={var / 'exec'}",
             f"--host={host}", f"--pidfile={pidfile}", "--bridge=none", "--iptables=false", "--ip-masq=false",
             "--ip-forward=false", "--userland-proxy=false", *extra_args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    services.wait_until(lambda: docker("version", host=host, check=False).returncode == 0, 60, "dockerd", log)
    return host


def down(var: Path | None = None) -> bool:
    """Stop the private dockerd (it stops its containers first); True if it was running."""
    pidfile = (var or var_dir()) / "dockerd.pid"
    pid = services.read_int(pidfile)
    if not services.pid_is(pid, "dockerd"):
        pidfile.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    services.wait_until(lambda: not services.pid_alive(pid), 60, "dockerd to stop")
    _unmount_below(var or var_dir())
    return True


def _unmount_below(root: Path) -> None:
    """dockerd leaves its network namespace mounted (exec/netns/default): unmount what is below
    ``root`` so the directory can be removed (a stale mount keeps `rm -rf var` failing with EBUSY)."""
    prefix = str(root.resolve()) + "/"
    try:
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        return
    for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True, check=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.docker", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "base", "rootfs", "images"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(f"export DOCKER_HOST={up()}")
        elif args.command == "down":
            say("stopped" if down() else "was not running")
        elif args.command == "rootfs":
            print(rootfs_tarball())
        elif args.command == "images":
            build_images(up())
        else:
            print(ensure_base(up()))
    except (DockerError, services.ServiceError) as exc:
        say(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
