"""Importing an existing cluster: read the credentials from a kubeconfig (or server + CA + token),
then connect and check everything Corral needs before anything is stored."""

import base64
import binascii

import yaml
from kubernetes import client as k8s

from clusters.kube.client import ClusterConnectionError, api_client, describe_error, server_version

# What Corral reads from a cluster; each is checked with a SelfSubjectAccessReview on import.
REQUIRED_ACCESS = [
    ("list", "", "nodes"), ("watch", "", "nodes"),
    ("list", "", "namespaces"), ("watch", "", "namespaces"),
    ("list", "", "pods"), ("watch", "", "pods"),
    ("list", "", "services"), ("list", "", "events"),
    ("list", "apps", "deployments"), ("list", "apps", "statefulsets"), ("list", "apps", "daemonsets"),
    ("list", "batch", "jobs"), ("list", "batch", "cronjobs"),
    # kubectl through Corral's proxy acts as each user, so the cluster's own RBAC decides.
    ("impersonate", "", "users"), ("impersonate", "", "groups"),
]
MAX_KUBECONFIG_BYTES = 512 * 1024


class ImportProblem(Exception):
    """Something the user must fix; ``field`` names the input it is about."""

    def __init__(self, field, message):
        self.field, self.message = field, message
        super().__init__(message)


def _decode_pem(value, what):
    try:
        text = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ImportProblem("kubeconfig", f"{what} is not valid base64") from None
    if "-----BEGIN" not in text:
        raise ImportProblem("kubeconfig", f"{what} is not a PEM certificate or key")
    return text


def _named(entries, name, kind):
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get(kind) or {}
    raise ImportProblem("kubeconfig", f"the kubeconfig has no {kind} named {name!r}")


def contexts(kubeconfig_text):
    """Names of the contexts in a kubeconfig, and the current one."""
    config = _load(kubeconfig_text)
    names = [c.get("name") for c in config.get("contexts") or [] if isinstance(c, dict)]
    return names, config.get("current-context")


def _load(text):
    if not isinstance(text, str) or not text.strip():
        raise ImportProblem("kubeconfig", "the kubeconfig is empty")
    if len(text.encode()) > MAX_KUBECONFIG_BYTES:
        raise ImportProblem("kubeconfig", f"the kubeconfig is larger than {MAX_KUBECONFIG_BYTES // 1024} KiB")
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ImportProblem("kubeconfig", f"the kubeconfig is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict) or config.get("kind", "Config") != "Config":
        raise ImportProblem("kubeconfig", "this is not a kubeconfig (expected kind: Config with clusters, users and contexts)")
    return config


def credentials_from_kubeconfig(text, context=None):
    """The credentials dict for ``context`` (default: the current context)."""
    config = _load(text)
    names = [c.get("name") for c in config.get("contexts") or [] if isinstance(c, dict)]
    if not names:
        raise ImportProblem("kubeconfig", "the kubeconfig has no contexts")
    if context is None:
        context = config.get("current-context")
        if not context:
            if len(names) > 1:
                raise ImportProblem("context", f"the kubeconfig has several contexts; choose one of: {', '.join(names)}")
            context = names[0]
    if context not in names:
        raise ImportProblem("context", f"no context {context!r} in the kubeconfig (it has: {', '.join(names)})")
    ctx = _named(config.get("contexts"), context, "context")
    cluster = _named(config.get("clusters"), ctx.get("cluster"), "cluster")
    user = _named(config.get("users"), ctx.get("user"), "user") if ctx.get("user") else {}

    for key in ("certificate-authority", "client-certificate", "client-key", "tokenFile"):
        if key in cluster or key in user:
            raise ImportProblem(
                "kubeconfig",
                f"the kubeconfig refers to a file ({key}); paste one with the data embedded: "
                "kubectl config view --raw --flatten --minify",
            )
    if "exec" in user or "auth-provider" in user:
        raise ImportProblem(
            "kubeconfig",
            "the kubeconfig signs in with a plugin (exec/auth-provider), which Corral does not run; "
            "use a service-account token or a client certificate",
        )
    server = cluster.get("server")
    if not server or not str(server).startswith("https://"):
        raise ImportProblem("kubeconfig", "the cluster's server must be an https:// URL")
    credentials = {"server": server}
    if cluster.get("certificate-authority-data"):
        credentials["ca_data"] = _decode_pem(cluster["certificate-authority-data"], "certificate-authority-data")
    if cluster.get("insecure-skip-tls-verify"):
        raise ImportProblem("kubeconfig", "insecure-skip-tls-verify is not accepted; give the cluster's CA certificate")
    if user.get("token"):
        credentials["token"] = str(user["token"]).strip()
    elif user.get("client-certificate-data") and user.get("client-key-data"):
        credentials["client_cert"] = _decode_pem(user["client-certificate-data"], "client-certificate-data")
        credentials["client_key"] = _decode_pem(user["client-key-data"], "client-key-data")
    else:
        raise ImportProblem("kubeconfig", f"the user of context {context!r} has no token or client certificate")
    return credentials


def credentials_from_token(server, ca_data, token):
    if not server or not server.startswith("https://"):
        raise ImportProblem("server", "must be the API server's https:// URL")
    if ca_data and "-----BEGIN CERTIFICATE-----" not in ca_data:
        try:
            ca_data = _decode_pem(ca_data, "ca_data")
        except ImportProblem:
            raise ImportProblem("ca_data", "must be the cluster CA certificate in PEM (or base64 of it)") from None
    if not token or not token.strip():
        raise ImportProblem("token", "must not be empty")
    return {"server": server.rstrip("/"), "ca_data": ca_data or "", "token": token.strip()}


def verify(credentials):
    """Connect and check: reachable, TLS trusted, credentials accepted, permissions Corral needs.
    Returns the Kubernetes version; raises ImportProblem naming the cause."""
    try:
        api = api_client(credentials)
    except (ClusterConnectionError, OSError) as exc:
        raise ImportProblem("server", str(exc)) from None
    try:
        try:
            version = server_version(api)
        except ClusterConnectionError as exc:
            field = "token" if getattr(exc, "status", None) in (401, 403) else "server"
            raise ImportProblem(field, str(exc)) from None
        # /version is often public: only an authenticated call proves the credentials work.
        authz = k8s.AuthorizationV1Api(api)
        missing = []
        for verb, group, resource in REQUIRED_ACCESS:
            review = k8s.V1SelfSubjectAccessReview(
                spec=k8s.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=k8s.V1ResourceAttributes(verb=verb, group=group, resource=resource)
                )
            )
            try:
                result = authz.create_self_subject_access_review(review, _request_timeout=api.corral_timeout)
            except Exception as exc:
                raise ImportProblem("token", describe_error(exc, credentials.get("server", ""))) from None
            if not result.status.allowed:
                missing.append(f'"{verb} {resource}"')
        if missing:
            raise ImportProblem("token", f"the credentials lack permissions Corral needs: {', '.join(missing)}")
        return version
    finally:
        api.close()
