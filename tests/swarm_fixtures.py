"""pytest fixtures for tests that need a real Docker Swarm.

  swarm       one single-node swarm for the whole session: a private dockerd (Debian's docker.io,
              tools/docker.py's up/down, vfs) under var/swarm-<pid>/, `docker swarm init`, a local
              test image that serves HTTP (busybox httpd from Debian's busybox-static), torn down
              at the end.  The same dockerd also listens on tcp with TLS client certificates
              (--tlsverify; the certificates are made here), so both endpoint kinds are real.

Several worktrees (and pytest runs) start this fixture at once on one machine, so nothing is fixed:
each swarm advertises its own loopback address (127.x.y.z, from its directory), its docker_gwbridge
is a bridge with its own interface name and subnet, and its ports are free ones.

Published ports: tools/docker.py runs dockerd with --iptables=false --userland-proxy=false (it must
not touch the host's firewall, which other runs share), so neither the routing mesh nor host-mode
publishing can forward a port here; a service that must answer HTTP runs on the host network
(``--network host``, httpd on a free port: ``swarm.http_service_args(port)``).

Without root, docker.io or busybox-static these tests skip and name the fix; with CI=true they fail.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tools import docker as docker_tool
from tools import services

BUSYBOX = Path("/bin/busybox")
IMAGE = "corral-test/busybox-httpd:1"
IMAGE_PORT = 8080  # what the image's httpd listens on by default


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_swarm_tools():
    """Skip (locally) or fail (in CI) when a private dockerd cannot be run here."""
    problem = None
    if os.geteuid() != 0:
        problem = "the Swarm tests run dockerd, which needs root here"
    elif not Path("/usr/sbin/dockerd").exists() or not Path(docker_tool.docker_binary()).exists():
        problem = "Debian's docker.io is not installed (apt-get install docker.io)"
    elif not BUSYBOX.exists():
        problem = "Debian's busybox-static is not installed (apt-get install busybox-static): the test image is made of it"
    if problem is None:
        return
    if _in_ci():
        pytest.fail(f"CI must run a real Swarm: {problem}", pytrace=False)
    pytest.skip(problem)


# --- certificates for the TLS endpoint ----------------------------------------------------------


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem(obj) -> str:
    from cryptography.hazmat.primitives import serialization

    if hasattr(obj, "private_bytes"):
        return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
    return obj.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(name: str):
    """(certificate, key) of a fresh CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca, name: str, *, server_ip: str | None = None):
    """(certificate PEM, key PEM) signed by ``ca``: a server certificate for ``server_ip``, else a client one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert, ca_key = ca
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2)))
    if server_ip:
        builder = (builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(server_ip))]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return _pem(builder.sign(ca_key, hashes.SHA256())), _pem(key)


# --- the swarm ------------------------------------------------------------------------------------


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def _loopback_address(var: Path) -> str:
    """A 127.x.y.z of this swarm's own (Linux routes all of 127/8 to lo): what it advertises and
    where its ports listen, so that two test swarms never answer for each other.  (The gossip port
    7946 cannot be moved in Engine 20.10: when another dockerd holds it on every address, this one
    logs "error in agentInit" and has no overlay networking, which these tests do not use.)"""
    h = _hash(str(var))
    return f"127.{(h >> 16) % 250 + 2}.{(h >> 8) % 256}.{h % 250 + 2}"


def _free_tcp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _udp_port(var: Path) -> int:
    """A free UDP port for the swarm's data path (VXLAN), from this swarm's directory."""
    h = _hash(f"udp {var}")
    for n in range(200):
        port = 20000 + (h + n) % 20000
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port
    raise docker_tool.DockerError("no free UDP port for the test swarm's data path")


def _gateway_subnet(var: Path) -> str:
    """A /24 in 10.128.0.0/9 no route on this host uses yet, for docker_gwbridge."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    used = [ipaddress.ip_network(w.split()[0], strict=False) for w in routes.splitlines() if w and w[0].isdigit()]
    h = _hash(f"subnet {var}")
    for n in range(500):
        value = (h + n) % (1 << 15)
        subnet = ipaddress.ip_network(f"10.{128 + (value >> 8)}.{value & 0xff}.0/24")
        if not any(subnet.overlaps(u) for u in used):
            return str(subnet)
    raise docker_tool.DockerError("no free subnet for the test swarm's docker_gwbridge")


def build_test_image(host: str, workdir: Path, tag: str = IMAGE) -> str:
    """A tiny image from this host's busybox-static: every applet linked, an index page under /www,
    and httpd on IMAGE_PORT as its command.  Nothing is pulled (no registry is reachable)."""
    root = workdir / "rootfs.tar"
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(root, "w") as tar:
        for directory in ("bin", "www", "tmp", "etc"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        for name, text in (("www/index.html", "corral swarm test\n"), ("etc/passwd", "root:x:0:0:root:/:/bin/sh\n"),
                           ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    docker_tool.docker("import", "--change", "ENV PATH=/bin", "--change", f"EXPOSE {IMAGE_PORT}",
                       "--change", f'CMD ["/bin/httpd", "-f", "-p", "{IMAGE_PORT}", "-h", "/www"]', root, tag, host=host, timeout=120)
    root.unlink()
    return tag


@dataclass
class Swarm:
    """A running single-node swarm: ``host`` is its unix socket (DOCKER_HOST form), ``tcp`` its TLS
    endpoint (tcp://127.x.y.z:port) with ``tls`` = {"tls_ca", "tls_cert", "tls_key"} (PEM) a client
    may use, ``address`` the loopback address it advertises, ``image`` the local test image."""

    var: Path
    host: str
    tcp: str
    tls: dict
    address: str
    image: str = IMAGE
    ca: tuple = field(default=None, repr=False)

    @property
    def credentials(self) -> dict:
        """What a Corral cluster stores to reach it over the unix socket."""
        return {"endpoint": self.host}

    @property
    def tls_credentials(self) -> dict:
        return {"endpoint": self.tcp, **self.tls}

    def docker(self, *args, check: bool = True, timeout: float = 120):
        """The docker CLI (Debian's) against this swarm; returns the CompletedProcess."""
        return docker_tool.docker(*args, host=self.host, check=check, timeout=timeout)

    def client(self):
        """A Docker SDK client on the unix socket (close it)."""
        import docker

        return docker.DockerClient(base_url=self.host, version="auto", timeout=60)

    @staticmethod
    def free_port() -> int:
        return services.free_port()

    def http_service_args(self, port: int) -> list[str]:
        """`docker service create` arguments that make the test image answer HTTP on 127.0.0.1:port
        (host network: see the module's note on published ports)."""
        return ["--network", "host", self.image, "httpd", "-f", "-p", str(port), "-h", "/www"]

    def remove_all_services(self) -> None:
        ids = self.docker("service", "ls", "-q").stdout.split()
        if ids:
            self.docker("service", "rm", *ids)


def _orphans(root: Path) -> None:
    """Stop the swarms of earlier pytest runs that died without teardown (their pid is gone)."""
    for path in sorted(root.glob("swarm-*")) if root.is_dir() else []:
        owner = re.fullmatch(r"swarm-(\d+)", path.name)
        if not owner or services.pid_alive(int(owner.group(1))):
            continue
        _teardown(path)


def _bridge_name(var: Path) -> str:
    return f"cgw{_hash(str(var)) % (1 << 40):010x}"  # 13 characters: an interface name is at most 15


def _teardown(var: Path) -> None:
    host = docker_tool.docker_host(var)
    if docker_tool.docker("version", host=host, check=False, timeout=20).returncode == 0:
        docker_tool.docker("swarm", "leave", "--force", host=host, check=False, timeout=60)
        docker_tool.docker("network", "rm", "docker_gwbridge", host=host, check=False, timeout=30)
    try:
        docker_tool.down(var)
    except services.ServiceError:
        pass
    docker_tool._unmount_below(var)
    subprocess.run(["ip", "link", "delete", _bridge_name(var)], capture_output=True, check=False)
    shutil.rmtree(var, ignore_errors=True)


def start_swarm(var: Path) -> Swarm:
    """A private dockerd under ``var`` (fresh), a swarm on it and the test image."""
    if var.exists():
        _teardown(var)
    var.mkdir(parents=True)
    address = _loopback_address(var)
    tls_port, swarm_port = _free_tcp_port(address), _free_tcp_port(address)
    ca = make_ca(f"corral-test-swarm {var.name}")
    certs = var / "tls"
    certs.mkdir(mode=0o700)
    server_cert, server_key = issue(ca, "dockerd", server_ip=address)
    client_cert, client_key = issue(ca, "corral")
    for name, text in (("ca.pem", _pem(ca[0])), ("server-cert.pem", server_cert), ("server-key.pem", server_key)):
        path = certs / name
        path.write_text(text)
        path.chmod(0o600)
    host = docker_tool.up(var, extra_args=(
        f"--host=tcp://{address}:{tls_port}", "--tlsverify", f"--tlscacert={certs / 'ca.pem'}",
        f"--tlscert={certs / 'server-cert.pem'}", f"--tlskey={certs / 'server-key.pem'}"))
    bridge = _bridge_name(var)
    # The swarm's gateway bridge, made before `swarm init` so that it gets a name and subnet of its
    # own (the default docker_gwbridge interface would be shared by every swarm on this host).
    docker_tool.docker("network", "create", "--driver", "bridge", "--subnet", _gateway_subnet(var),
                       "-o", f"com.docker.network.bridge.name={bridge}",
                       "-o", "com.docker.network.bridge.enable_icc=false",
                       "-o", "com.docker.network.bridge.enable_ip_masquerade=false", "docker_gwbridge", host=host)
    docker_tool.docker("swarm", "init", "--advertise-addr", f"{address}:{swarm_port}", "--listen-addr", f"{address}:{swarm_port}",
                       "--data-path-port", _udp_port(var), host=host, timeout=120)
    image = build_test_image(host, var)
    return Swarm(var=var, host=host, tcp=f"tcp://{address}:{tls_port}", address=address, image=image, ca=ca,
                 tls={"tls_ca": _pem(ca[0]), "tls_cert": client_cert, "tls_key": client_key})


@pytest.fixture(scope="session")
def swarm():
    require_swarm_tools()
    root = services.default_var_dir()
    _orphans(root)
    var = root / f"swarm-{os.getpid()}"
    try:
        running = start_swarm(var)
    except (docker_tool.DockerError, services.ServiceError) as exc:
        _teardown(var)
        pytest.fail(f"could not start the test swarm: {exc}", pytrace=False)
    yield running
    _teardown(var)


@pytest.fixture
def swarm_service_name(request):
    """A unique service name for one test (the swarm is shared by the session)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:30].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:6]}"
