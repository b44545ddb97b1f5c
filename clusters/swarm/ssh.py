"""ssh:// Docker endpoints: the Engine API through ``docker system dial-stdio`` on the manager, over
one SSH connection Corral opens itself (paramiko, in the process: no ssh binary, no ~/.ssh).

What an ssh:// Swarm stores (encrypted at rest with the rest of its credentials): ``ssh_key``, the
private key (OpenSSH or PEM, without a passphrase), and ``ssh_host_key``, what the host's key must
be: known_hosts lines (``ssh-keyscan`` output), public key lines (``/etc/ssh/ssh_host_*_key.pub``)
or SHA256 fingerprints (``ssh-keygen -lf``).  An unknown or different host key is refused: Corral
never trusts on first use.  The private key is parsed in memory and never written to disk.

The TCP connection goes through the outbound network policy (PORTAL_CLUSTER_ALLOWED/DENIED_NETWORKS)
exactly as a tcp:// endpoint's: every address the host resolves to is checked before a packet is
sent, and SSH runs on that very socket.  The Docker SDK's SSH adapter (paramiko transport) then
opens one SSH channel per HTTP connection on it, each running ``docker system dial-stdio``; it is
given our connected client instead of building its own from ~/.ssh/config.
"""

import base64
import binascii
import io
import logging
import re
import socket
from urllib.parse import urlsplit

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from docker.transport.sshconn import SSHHTTPAdapter

from clusters.kube import outbound

DIAL = "docker system dial-stdio"
FINGERPRINT = re.compile(r"SHA256:([A-Za-z0-9+/]{43})=?")
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


class SSHProblem(Exception):
    """An ssh:// endpoint's key, host key or connection is not right; ``cause`` as for
    SwarmConnectionError (host_key, auth, unreachable, not_allowed, endpoint), ``field`` the input."""

    def __init__(self, message, cause, field="endpoint"):
        self.cause, self.field = cause, field
        super().__init__(message)


def target(endpoint):
    """(user, host, port) of ssh://user@host[:port]."""
    parts = urlsplit(endpoint.strip())
    if not parts.username:
        raise SSHProblem(f"the ssh endpoint {endpoint!r} names no user: ssh://user@host[:port]", "endpoint")
    if parts.password is not None:
        raise SSHProblem(f"the ssh endpoint {endpoint!r} has a password in it: Corral logs in with ssh_key only", "endpoint")
    return parts.username, parts.hostname, parts.port or 22


def private_key(text):
    """The paramiko key of an unencrypted OpenSSH or PEM private key (RSA, ECDSA, Ed25519)."""
    if not isinstance(text, str) or "PRIVATE KEY-----" not in text:
        raise SSHProblem("is not a private key (-----BEGIN OPENSSH PRIVATE KEY----- or a PEM private key)", "auth", "ssh_key")
    data = text.strip().encode() + b"\n"
    try:
        try:
            loaded = serialization.load_ssh_private_key(data, password=None)
        except ValueError:
            loaded = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SSHProblem("is protected by a passphrase: give it without one (Corral keeps it encrypted at rest)",
                         "auth", "ssh_key") from None
    except (ValueError, binascii.Error) as exc:
        raise SSHProblem(f"cannot be read as a private key ({exc})", "auth", "ssh_key") from None
    except Exception as exc:  # noqa: BLE001 - cryptography's UnsupportedAlgorithm and kin
        raise SSHProblem(f"is a key Corral cannot use ({exc})", "auth", "ssh_key") from None
    kinds = ((ed25519.Ed25519PrivateKey, paramiko.Ed25519Key), (ec.EllipticCurvePrivateKey, paramiko.ECDSAKey),
             (rsa.RSAPrivateKey, paramiko.RSAKey))
    key_class = next((cls for kind, cls in kinds if isinstance(loaded, kind)), None)
    if key_class is None:
        raise SSHProblem(f"is a {type(loaded).__name__.removeprefix('_')} key: use Ed25519, ECDSA or RSA", "auth", "ssh_key")
    try:
        return key_class.from_private_key(io.StringIO(data.decode()))
    except (paramiko.SSHException, ValueError) as exc:
        raise SSHProblem(f"cannot be read as a private key ({exc})", "auth", "ssh_key") from None


class HostKeys:
    """The host keys an ssh:// endpoint accepts: keys (paramiko PKeys) and SHA256 fingerprints."""

    def __init__(self, text):
        self.keys, self.fingerprints = [], []
        if not isinstance(text, str) or not text.strip():
            raise SSHProblem("required for an ssh:// endpoint: the host's key as a known_hosts line (ssh-keyscan -p PORT HOST), "
                             "its public key (/etc/ssh/ssh_host_ed25519_key.pub) or its SHA256 fingerprint; "
                             "Corral does not trust a host key on first use", "host_key", "ssh_host_key")
        for number, line in enumerate(text.strip().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("@"):
                raise SSHProblem(f"line {number}: {line.split()[0]} lines are not supported: give the host's own key", "host_key", "ssh_host_key")
            words = line.split()
            at = next((i for i, word in enumerate(words[:3]) if word in KEY_TYPES), None)
            found = FINGERPRINT.search(line)
            if at is not None and len(words) > at + 1:
                self.keys.append(self._key(number, words[at], words[at + 1]))
            elif found:
                self.fingerprints.append(f"SHA256:{found.group(1)}")
            elif any(word.startswith(("ssh-", "ecdsa-", "sk-")) for word in words[:3]):
                raise SSHProblem(f"line {number}: this host key type is not supported (use {', '.join(KEY_TYPES)})", "host_key", "ssh_host_key")
            elif re.search(r"\b(MD5:)?([0-9a-f]{2}:){15}[0-9a-f]{2}\b", line):
                raise SSHProblem(f"line {number}: MD5 fingerprints are not accepted: give the SHA256 one (ssh-keygen -lf)", "host_key", "ssh_host_key")
            else:
                raise SSHProblem(f"line {number} is neither a known_hosts line, a public key nor a SHA256: fingerprint", "host_key", "ssh_host_key")
        if not self.keys and not self.fingerprints:
            raise SSHProblem("names no host key (only comments)", "host_key", "ssh_host_key")

    @staticmethod
    def _key(number, kind, blob):
        try:
            return paramiko.PKey.from_type_string(kind, base64.b64decode(blob, validate=True))
        except Exception:  # noqa: BLE001 - bad base64, or bytes that are no such key
            raise SSHProblem(f"line {number}: the {kind} key is not valid base64 key data", "host_key", "ssh_host_key") from None

    def key_types(self):
        return list(dict.fromkeys(key.get_name() for key in self.keys))

    def accepts(self, key):
        return any(key.get_name() == known.get_name() and key.asbytes() == known.asbytes() for known in self.keys) \
            or key.fingerprint in self.fingerprints

    def describe(self):
        return ", ".join([f"{key.get_name()} {key.fingerprint}" for key in self.keys] + self.fingerprints)


class _CheckHostKey(paramiko.MissingHostKeyPolicy):
    """Paramiko is given no host keys, so every server key comes here: accepted only if listed."""

    def __init__(self, known, where):
        self.known, self.where = known, where

    def missing_host_key(self, client, hostname, key):
        if not self.known.accepts(key):
            raise SSHProblem(
                f"the SSH host key of {self.where} is {key.get_name()} {key.fingerprint}, which is not the one given in "
                f"ssh_host_key ({self.known.describe()}): a different host, a reinstalled one, or a man in the middle",
                "host_key", "ssh_host_key")


def connect(endpoint, credentials, timeout):
    """A paramiko SSHClient logged in to the endpoint's host, its host key checked, its TCP socket
    opened under the outbound policy.  Raises SSHProblem naming the cause."""
    user, host, port = target(endpoint)
    key = private_key(credentials.get("ssh_key"))
    known = HostKeys(credentials.get("ssh_host_key"))
    where = f"{host}:{port}"
    try:
        sock = outbound.create_connection((host, port), timeout)
    except outbound.ConnectionNotAllowed as exc:
        raise SSHProblem(str(exc), "not_allowed") from None
    except socket.gaierror:
        raise SSHProblem(f"unknown host {host} (ssh endpoint {endpoint})", "unreachable") from None
    except TimeoutError:
        raise SSHProblem(f"the SSH server at {where} did not answer in time", "unreachable") from None
    except OSError as exc:
        raise SSHProblem(f"cannot connect to the SSH server at {where} ({exc.strerror or exc})", "unreachable") from None

    def transport(sock, **kwargs):
        made = paramiko.Transport(sock, **kwargs)
        preferred = known.key_types()
        if preferred:  # offer first the host key types we know, as ssh does with known_hosts
            options = made.get_security_options()
            rsa_names = ["rsa-sha2-512", "rsa-sha2-256"] if "ssh-rsa" in preferred else []
            first = [t for t in rsa_names + preferred if t in options.key_types]
            options.key_types = first + [t for t in options.key_types if t not in first]
        return made

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_CheckHostKey(known, where))
    try:
        client.connect(host, port=port, username=user, pkey=key, sock=sock, look_for_keys=False, allow_agent=False,
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                       transport_factory=transport)
    except SSHProblem:
        client.close()
        raise
    except paramiko.AuthenticationException:
        client.close()
        raise SSHProblem(f"the SSH server at {where} refused the key for user {user!r} (ssh_key {key.get_name()} {key.fingerprint} "
                         f"is not in {user}'s authorized_keys, or the user may not log in)", "auth", "ssh_key") from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        client.close()
        text = str(exc) or type(exc).__name__
        if "banner" in text.lower():
            raise SSHProblem(f"{where} does not speak SSH ({text})", "unreachable") from None
        raise SSHProblem(f"the SSH connection to {where} failed: {text}", "unreachable") from None
    return client


class CorralSSHAdapter(SSHHTTPAdapter):
    """The Docker SDK's paramiko SSH adapter, given Corral's connected client (see ``connect``)
    instead of one it would build from ~/.ssh/config and the system's known_hosts."""

    def __init__(self, endpoint, credentials, timeout):
        self.corral_endpoint, self.corral_credentials, self.connect_timeout = endpoint, credentials, timeout
        super().__init__(endpoint, timeout=timeout)

    def _create_paramiko_client(self, base_url):
        logging.getLogger("paramiko").setLevel(logging.WARNING)  # as the SDK does: no line per connection
        self.ssh_client = None

    def _connect(self):
        if self.ssh_client is not None:
            self.ssh_client.close()
        self.ssh_client = connect(self.corral_endpoint, self.corral_credentials, self.connect_timeout)

    def get_connection(self, url, proxies=None):
        with self.pools.lock:
            transport = self.ssh_client.get_transport() if self.ssh_client is not None else None
            if transport is None or not transport.is_active():  # closed, or the server went away: log in again
                self._connect()
                self.pools.clear()
        return super().get_connection(url, proxies)

    def dial_failure(self):
        """What ``docker system dial-stdio`` said when it ran but gave no API (or None): a new
        session runs it and reads its stderr and exit status."""
        transport = self.ssh_client.get_transport() if self.ssh_client is not None else None
        if transport is None or not transport.is_active():
            return None
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.settimeout(self.connect_timeout)
            channel.exec_command(DIAL)
            channel.shutdown_write()
            err = b""
            while len(err) < 2000:
                chunk = channel.recv_stderr(2000)
                if not chunk:
                    break
                err += chunk
            channel.status_event.wait(self.connect_timeout)
            status = channel.exit_status if channel.exit_status_ready() else "(still running)"
            channel.close()
        except Exception:  # noqa: BLE001 - only a diagnosis
            return None
        text = err.decode(errors="replace").strip()
        if status == 0 and not text:
            return None
        return f"`{DIAL}` on the host exited {status}" + (f": {text[:300]}" if text else "")
