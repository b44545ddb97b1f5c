"""The one place that turns a Swarm cluster's stored credentials into a Docker SDK client.

Credentials are a dict: ``endpoint`` (``unix:///path``, ``tcp://host:port`` or
``ssh://user@host[:port]``) and, for tcp, ``tls_ca``, ``tls_cert`` and ``tls_key`` (PEM), for ssh,
``ssh_key`` and ``ssh_host_key`` (clusters.swarm.ssh).  The PEM files are written to a private
temporary directory that lives as long as the client; the SSH key stays in memory.  A tcp or ssh
connection obeys the outbound network policy (PORTAL_CLUSTER_ALLOWED/DENIED_NETWORKS) on its
socket, as a Kubernetes client's does; a unix socket is this host's own.
"""

import os
import ssl
import tempfile
import weakref
from urllib.parse import urlsplit

import docker
import requests
from django.conf import settings
from docker import errors as docker_errors
from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION
from docker.utils import version_lt

from clusters.kube import outbound
from clusters.kube.outbound import ConnectionNotAllowed
from clusters.swarm.ssh import SSHProblem

SCHEMES = ("unix", "tcp", "ssh")


class SwarmConnectionError(Exception):
    """A Docker endpoint could not be reached or refused us; the message is for people.
    ``cause`` is one of: endpoint, unreachable, tls, refused, not_allowed, version, and for ssh://
    host_key (unknown or wrong host key) and auth (the key refused)."""

    def __init__(self, message, cause="unreachable"):
        self.cause = cause
        super().__init__(message)


def parse_endpoint(endpoint):
    """(scheme, where) of a Docker endpoint, or SwarmConnectionError(cause="endpoint") naming the fault."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise SwarmConnectionError("the Docker endpoint is empty", "endpoint")
    endpoint = endpoint.strip()
    parts = urlsplit(endpoint)
    if parts.scheme not in SCHEMES:
        raise SwarmConnectionError(
            f"the Docker endpoint {endpoint!r} must start with unix://, tcp:// or ssh://", "endpoint")
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise SwarmConnectionError(f"the unix socket path in {endpoint!r} must be absolute (unix:///path)", "endpoint")
        return "unix", parts.path
    try:
        port = parts.port
    except ValueError:
        raise SwarmConnectionError(f"the port in {endpoint!r} is not a number", "endpoint") from None
    if not parts.hostname:
        raise SwarmConnectionError(f"the Docker endpoint {endpoint!r} names no host", "endpoint")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SwarmConnectionError(f"the Docker endpoint {endpoint!r} must be scheme://host[:port] only", "endpoint")
    if parts.scheme == "tcp" and not port:
        raise SwarmConnectionError(f"the Docker endpoint {endpoint!r} needs a port (Docker's TLS port is 2376)", "endpoint")
    return parts.scheme, parts.netloc


def _write(directory, name, pem):
    path = os.path.join(directory, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(pem)
    return path


def docker_client(credentials, timeout=None):
    """A ``docker.DockerClient`` for ``credentials``, its API version agreed with the engine; close
    it (or use ``with``).  Raises SwarmConnectionError naming what went wrong."""
    scheme, where = parse_endpoint((credentials or {}).get("endpoint"))
    timeout = timeout or settings.KUBE_REQUEST_TIMEOUT
    tmp = tempfile.TemporaryDirectory(prefix="corral-swarm-")
    tls = False
    if scheme == "tcp":
        missing = [k for k in ("tls_ca", "tls_cert", "tls_key") if not (credentials.get(k) or "").strip()]
        if missing:
            tmp.cleanup()
            raise SwarmConnectionError(
                f"a tcp:// endpoint needs TLS client certificates ({', '.join(missing)} missing): "
                "Docker's plain TCP socket gives root on the host to anyone who reaches it", "tls")
        for key in ("tls_ca", "tls_cert", "tls_key"):
            if "-----BEGIN" not in credentials[key]:
                tmp.cleanup()
                raise SwarmConnectionError(f"{key} is not PEM (-----BEGIN ...)", "tls")
        try:
            tls = docker.tls.TLSConfig(
                client_cert=(_write(tmp.name, "cert.pem", credentials["tls_cert"]), _write(tmp.name, "key.pem", credentials["tls_key"])),
                ca_cert=_write(tmp.name, "ca.pem", credentials["tls_ca"]), verify=True)
        except docker_errors.TLSParameterError as exc:
            tmp.cleanup()
            raise SwarmConnectionError(f"the TLS settings are not usable: {exc}", "tls") from None
    base_url = {"unix": f"unix://{where}", "tcp": f"tcp://{where}", "ssh": f"ssh://{where}"}[scheme]
    adapter = None
    if scheme == "ssh":
        from clusters.swarm.ssh import CorralSSHAdapter

        try:
            adapter = CorralSSHAdapter(base_url, credentials, timeout)
        except SSHProblem as exc:
            tmp.cleanup()
            raise SwarmConnectionError(str(exc), exc.cause) from None
    try:
        # A fixed version first (no request yet): the guard goes on before the first connection.
        # For ssh, the SDK's shell-out adapter is made (it starts nothing) and replaced by ours.
        client = docker.DockerClient(base_url=base_url, tls=tls, version=MINIMUM_DOCKER_API_VERSION, timeout=timeout,
                                     use_ssh_client=scheme == "ssh")
    except docker_errors.DockerException as exc:
        tmp.cleanup()
        if adapter is not None:
            adapter.close()
        raise SwarmConnectionError(f"cannot use the Docker endpoint {base_url}: {exc}", "endpoint") from None
    if adapter is not None:
        client.api._custom_adapter.close()
        client.api._custom_adapter = adapter
        client.api.mount("http+docker://ssh", adapter)
    weakref.finalize(client, tmp.cleanup)
    api = client.api
    # Straight to the engine, never through an HTTP(S)_PROXY from the environment (the policy
    # checks the address actually connected to).
    api.trust_env = False
    if scheme == "tcp":
        for mounted in api.adapters.values():
            if getattr(mounted, "poolmanager", None) is not None:
                outbound.guard(mounted.poolmanager)
    try:
        server = api.version(api_version=False)["ApiVersion"]
    except Exception as exc:
        said = adapter.dial_failure() if adapter is not None else None
        client.close()
        if said:
            raise SwarmConnectionError(f"the SSH login to {base_url} worked but gave no Docker API: {said} "
                                       "(is the docker CLI installed there, and may that user use it?)", "refused") from exc
        raise SwarmConnectionError(describe_error(exc, base_url), cause_of(exc)) from exc
    api._version = DEFAULT_DOCKER_API_VERSION if version_lt(DEFAULT_DOCKER_API_VERSION, server) else server
    client.corral_endpoint = base_url
    return client


def cause_of(exc):
    text = str(exc)
    if isinstance(_root(exc), SSHProblem):  # an ssh client logging in again later (host key changed...)
        return _root(exc).cause
    if isinstance(exc, ConnectionNotAllowed) or isinstance(getattr(exc, "__context__", None), ConnectionNotAllowed) \
            or "is not allowed:" in text:
        return "not_allowed"
    if isinstance(exc, (requests.exceptions.SSLError, ssl.SSLError)) or "SSL" in text or "CERTIFICATE" in text:
        return "tls"
    if isinstance(exc, docker_errors.APIError):
        return "refused"
    return "unreachable"


def _root(exc):
    """The innermost exception (requests wraps urllib3's, which wraps the socket's)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None) if not isinstance(getattr(exc, "reason", None), str) else None
        inner = inner or (exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None) or exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return exc


def describe_error(exc, endpoint=""):
    """Words a user understands for what went wrong talking to a Docker engine."""
    where = f" at {endpoint}" if endpoint else ""
    root = _root(exc)
    if isinstance(root, SSHProblem):
        return str(root)
    if isinstance(root, ConnectionNotAllowed) or isinstance(exc, ConnectionNotAllowed):
        return str(root if isinstance(root, ConnectionNotAllowed) else exc)
    text = f"{exc} {root}"
    if isinstance(exc, docker_errors.APIError):
        return f"the Docker engine{where} answered {exc.status_code}: {exc.explanation or exc}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"the Docker engine's TLS certificate{where} is not trusted by the given CA (tls_ca)"
    if "bad certificate" in text or "certificate required" in text or "unknown ca" in text.lower():
        return f"the Docker engine{where} refused the TLS client certificate (tls_cert/tls_key not signed by the CA it trusts)"
    if "SSL" in text or "TLS" in text or isinstance(root, ssl.SSLError):
        return f"the TLS handshake with the Docker engine{where} failed ({str(root)[:200]})"
    if isinstance(root, FileNotFoundError) or "No such file or directory" in text:
        return f"there is no Docker socket{where}"
    if isinstance(root, PermissionError) or "Permission denied" in text:
        return f"Corral may not open the Docker socket{where} (permission denied)"
    if "timed out" in text or "Timeout" in type(root).__name__:
        return f"the Docker engine{where} did not answer in time"
    if "Name or service not known" in text or "NameResolution" in text or "nodename nor servname" in text:
        return f"unknown host{where}"
    if "Connection refused" in text or "ConnectionRefused" in type(root).__name__ or isinstance(root, ConnectionError):
        return f"cannot connect to the Docker engine{where} (connection refused or host unreachable)"
    if "ssh" in text.lower():
        return f"the SSH connection{where} failed: {str(root)[:300]}"
    return f"error talking to the Docker engine{where}: {str(root)[:300]}"


STACK_LABEL = "com.docker.stack.namespace"


def remove_stacks(credentials, names):
    """Remove stacks as `docker stack rm` does: their services first, then their secrets, configs
    and networks (a project deleted with its namespaces, on a Swarm)."""
    client = docker_client(credentials)
    try:
        api = client.api
        for name in names:
            wanted = {"label": f"{STACK_LABEL}={name}"}
            for service in api.services(filters=wanted):
                api.remove_service(service["ID"])
            for secret in api.secrets(filters=wanted):
                api.remove_secret(secret["ID"])
            for config in api.configs(filters=wanted):
                api.remove_config(config["ID"])
            for network in api.networks(filters=wanted):
                api.remove_network(network["Id"])
    except docker_errors.DockerException as exc:
        raise SwarmConnectionError(describe_error(exc, client.corral_endpoint), cause_of(exc)) from exc
    finally:
        client.close()
