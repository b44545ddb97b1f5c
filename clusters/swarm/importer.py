"""Importing a Swarm: connect to the manager's Engine API and check everything Corral needs before
anything is stored (reachable, TLS valid or the SSH host key the given one and the key accepted, a
swarm manager, a recent enough engine).  Each failure
is an ImportProblem naming the input to fix."""

from docker.utils import version_lt

from clusters.kube.importer import ImportProblem
from clusters.swarm.client import SwarmConnectionError, describe_error, docker_client, parse_endpoint

MINIMUM_API = "1.30"  # Docker 17.06: service and task listing as Corral reads them
# Which input a connection failure is about.
FIELD_OF_CAUSE = {"endpoint": "endpoint", "unreachable": "endpoint", "not_allowed": "endpoint", "refused": "endpoint",
                  "tls": "tls_cert", "version": "endpoint", "host_key": "ssh_host_key", "auth": "ssh_key"}
PEM_FIELDS = ("tls_ca", "tls_cert", "tls_key")
SSH_FIELDS = ("ssh_key", "ssh_host_key")


def credentials_from(endpoint, tls_ca="", tls_cert="", tls_key="", ssh_key="", ssh_host_key=""):
    """The credentials Corral stores for a Swarm (checked for shape, not yet connected)."""
    try:
        scheme, _ = parse_endpoint(endpoint)
    except SwarmConnectionError as exc:
        raise ImportProblem("endpoint", str(exc)) from None
    given = {"tls_ca": tls_ca or "", "tls_cert": tls_cert or "", "tls_key": tls_key or ""}
    by_ssh = {"ssh_key": ssh_key or "", "ssh_host_key": ssh_host_key or ""}
    if scheme == "ssh":
        return _ssh_credentials(endpoint.strip(), given, by_ssh)
    extra = [field for field, value in by_ssh.items() if value.strip()]
    if extra:
        raise ImportProblem(extra[0], f"is for ssh:// endpoints, not {scheme}://")
    if scheme == "tcp":
        for field, value in given.items():
            if not value.strip():
                raise ImportProblem(field, f"required for a tcp:// endpoint (Docker's TLS client certificates: {', '.join(PEM_FIELDS)})")
            if "-----BEGIN" not in value:
                raise ImportProblem(field, "is not PEM (it starts with -----BEGIN ...)")
        return {"endpoint": endpoint.strip(), **given}
    extra = [field for field, value in given.items() if value.strip()]
    if extra:
        raise ImportProblem(extra[0], f"TLS certificates are for tcp:// endpoints, not {scheme}://")
    return {"endpoint": endpoint.strip()}


def _ssh_credentials(endpoint, tls, given):
    from clusters.swarm import ssh

    extra = [field for field, value in tls.items() if value.strip()]
    if extra:
        raise ImportProblem(extra[0], "TLS certificates are for tcp:// endpoints; an ssh:// endpoint takes ssh_key and ssh_host_key")
    if not given["ssh_key"].strip():
        raise ImportProblem("ssh_key", "required for an ssh:// endpoint: the private key Corral logs in with (OpenSSH or PEM)")
    try:
        ssh.target(endpoint)
        ssh.private_key(given["ssh_key"])
        ssh.HostKeys(given["ssh_host_key"])
    except ssh.SSHProblem as exc:
        raise ImportProblem(exc.field, str(exc)) from None
    return {"endpoint": endpoint, "ssh_key": given["ssh_key"].strip() + "\n", "ssh_host_key": given["ssh_host_key"].strip()}


def probe(credentials):
    """Connect and read what Corral needs: returns {"version", "api_version", "swarm_id", "nodes"};
    raises SwarmConnectionError (cause "not_manager" when the engine is no swarm manager)."""
    client = docker_client(credentials)
    try:
        try:
            version = client.api.version(api_version=False)
            info = client.api.info()
        except Exception as exc:
            raise SwarmConnectionError(describe_error(exc, client.corral_endpoint), "unreachable") from exc
        where = client.corral_endpoint
        if version_lt(version.get("ApiVersion", "0"), MINIMUM_API):
            raise SwarmConnectionError(
                f"the Docker engine at {where} is too old (Engine {version.get('Version')}, API {version.get('ApiVersion')}): "
                f"Corral needs API {MINIMUM_API} (Docker 17.06) or later", "version")
        swarm = info.get("Swarm") or {}
        state = swarm.get("LocalNodeState", "")
        if state != "active":
            raise SwarmConnectionError(
                f"the Docker engine at {where} is not part of a swarm (its swarm state is {state or 'unknown'!r}): "
                "run `docker swarm init` on it, or give a manager's endpoint", "not_manager")
        if not swarm.get("ControlAvailable"):
            raise SwarmConnectionError(
                f"the Docker engine at {where} is a swarm worker, not a manager: give a manager's endpoint "
                "(`docker node ls` on a manager lists them)", "not_manager")
        return {"version": version.get("Version", ""), "api_version": version.get("ApiVersion", ""),
                "swarm_id": (swarm.get("Cluster") or {}).get("ID", ""), "nodes": swarm.get("Nodes")}
    finally:
        client.close()


def verify(credentials):
    """Check the credentials against the engine; returns what ``probe`` found, or raises
    ImportProblem naming the field to fix."""
    try:
        return probe(credentials)
    except SwarmConnectionError as exc:
        field = FIELD_OF_CAUSE.get(exc.cause, "endpoint")
        if exc.cause == "tls" and "CA" in str(exc) and "not trusted" in str(exc):
            field = "tls_ca"
        raise ImportProblem(field, str(exc)) from None
