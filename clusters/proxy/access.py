"""Who is calling the proxy and what they may reach: synchronous, database-side decisions the ASGI
apps run in a thread.  Every answer comes from the one permission engine (``restrict``)."""

import re
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from clusters.models import Cluster, ClusterState
from portal.models import ApiToken, AuditEvent

PATH = re.compile(r"^/k8s/clusters/(?P<id>[0-9]{1,18})(?P<rest>/.*)?$")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Clusters the proxy forwards to; any other state is a 503 naming it.
REACHABLE = frozenset({ClusterState.ACTIVE, ClusterState.UPDATING})


class Refusal(Exception):
    """An answer given before anything is forwarded: HTTP status, Kubernetes reason, message."""

    def __init__(self, code, reason, message):
        self.code, self.reason, self.message = code, reason, message
        super().__init__(message)


@dataclass
class Target:
    token_id: int | None
    user_id: int
    username: str
    cluster_id: int
    cluster_name: str
    credentials: dict
    impersonate_user: str
    impersonate_groups: list = field(default_factory=list)
    # What an open stream's right to go on hangs on: ("token", id) or ("session", key).
    stream_key: tuple = ()


def bearer(headers):
    """The token presented in ``Authorization: Bearer ...`` (or None)."""
    value = headers.get(b"authorization")
    if value is None:
        return None
    parts = value.decode("latin-1").split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def cookies(headers):
    from http.cookies import SimpleCookie

    jar = SimpleCookie()
    try:
        jar.load(headers.get(b"cookie", b"").decode("latin-1"))
    except Exception:  # noqa: BLE001 - a malformed cookie header is no session
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def session_user(session_key):
    """The active user signed in with ``session_key`` (the portal's own pages), or None; the same
    checks as django.contrib.auth.get_user (backend, session hash)."""
    from importlib import import_module

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
    from django.utils.crypto import constant_time_compare

    if not session_key:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user_id, backend_path = session.get(SESSION_KEY), session.get(BACKEND_SESSION_KEY)
    if user_id is None or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if user is None or not user.is_active:
        return None
    if not constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return None
    return user


def csrf_ok(headers, jar):
    """A page's write (session, not token): its X-CSRFToken must match the CSRF cookie, as
    Django's CsrfViewMiddleware requires, and an Origin, when sent, must be this host."""
    from django.middleware.csrf import InvalidTokenFormat, _check_token_format, _does_token_match

    origin, host = headers.get(b"origin"), headers.get(b"host", b"")
    if origin is not None and origin.split(b"://", 1)[-1] != host:
        return False
    sent, cookie = headers.get(b"x-csrftoken", b"").decode("latin-1"), jar.get(settings.CSRF_COOKIE_NAME, "")
    try:
        _check_token_format(sent)
        _check_token_format(cookie)
    except InvalidTokenFormat:
        return False
    return _does_token_match(sent, cookie)


def authorize(presented, cluster_id, method, headers=None, websocket=False):
    """The Target for a request to ``cluster_id``, by token ``presented`` or else by the portal's
    session cookie (``headers``); raises Refusal."""
    from projects import identity

    headers = headers or {}
    token = ApiToken.authenticate(presented) if presented else None
    if presented and token is None:
        raise Refusal(401, "Unauthorized", "Corral: a valid, unexpired Corral token is required (Authorization: Bearer crl_...)")
    if token is not None:
        if token.read_only and method not in SAFE_METHODS:
            raise Refusal(403, "Forbidden", "Corral: this token is read-only")
        now = timezone.now()
        if token.last_used is None or (now - token.last_used).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        user = token.user
        stream_key = ("token", token.pk)
    else:
        jar = cookies(headers)
        user = session_user(jar.get(settings.SESSION_COOKIE_NAME))
        stream_key = ("session", jar.get(settings.SESSION_COOKIE_NAME))
        if user is None:
            raise Refusal(401, "Unauthorized", "Corral: a valid, unexpired Corral token is required (Authorization: Bearer crl_...)")
        # Pages write with the CSRF token; a page's websocket (a shell) must come from this host.
        if (websocket and headers.get(b"origin", b"").split(b"://", 1)[-1] != headers.get(b"host", b"")) or (
            not websocket and method not in SAFE_METHODS and not csrf_ok(headers, jar)
        ):
            raise Refusal(403, "Forbidden", "Corral: CSRF check failed (a page's request must come from Corral's own pages)")
    # A cluster the caller may not see is answered exactly like a missing one, before anything is sent.
    cluster = Cluster.objects.restrict(user, "view").filter(pk=cluster_id).only("pk", "name", "kind", "state", "last_error", "credentials").first()
    if cluster is None:
        raise Refusal(404, "NotFound", f"Corral: no cluster with id {cluster_id}")
    if cluster.is_swarm:
        raise Refusal(400, "BadRequest", f"Corral: {cluster.kubernetes_only('kubectl')}")
    if cluster.state not in REACHABLE:
        why = f": {cluster.last_error}" if cluster.last_error else ""
        raise Refusal(503, "ServiceUnavailable", f"Corral: cluster {cluster.name!r} is {cluster.state}{why}")
    if not cluster.credentials or not cluster.credentials.get("server"):
        raise Refusal(503, "ServiceUnavailable", f"Corral: cluster {cluster.name!r} has no credentials to reach it with")
    impersonate_user, groups = identity.impersonation(user)
    return Target(
        token_id=token.pk if token is not None else None, user_id=user.pk, username=user.get_username(), cluster_id=cluster.pk, cluster_name=cluster.name,
        credentials=cluster.credentials, impersonate_user=impersonate_user,
        impersonate_groups=groups, stream_key=stream_key,
    )


def still_usable(keys):
    """Of the streams' ``keys``, those still usable: tokens not revoked or expired, sessions not
    signed out or expired, their users active."""
    token_ids = [value for kind, value in keys if kind == "token"]
    usable = {("token", pk) for pk in ApiToken.objects.usable().filter(pk__in=token_ids).values_list("pk", flat=True)}
    usable |= {("session", key) for kind, key in keys if kind == "session" and session_user(key) is not None}
    return usable


# --- audit ------------------------------------------------------------------------------------

VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
ACTIONS = {"create": "create", "update": "update", "patch": "update", "delete": "delete", "deletecollection": "delete"}


def describe_path(path):
    """(group, resource, namespace, name, subresource) of a Kubernetes API path, or None."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if resource == "namespaces" and name and not namespace:
        namespace = name
    return group, resource, namespace, name, subresource


def audit(target, method, path, status, verb=None, body=None):
    """Write a mutating request through the proxy to the audit trail."""
    described = describe_path(path) or ("", path[:60], "", "", "")
    group, resource, namespace, name, subresource = described
    verb = verb or VERBS.get(method, method.lower())
    if verb == "delete" and not name:
        verb = "deletecollection"
    kind = f"{resource}/{subresource}" if subresource else resource
    after = {
        "cluster": target.cluster_id, "verb": verb, "group": group, "resource": kind, "namespace": namespace,
        "name": name, "code": status,
    }
    if body is not None and settings.PROXY_AUDIT_BODIES and resource != "secrets" and len(body) <= 64 * 1024:
        after["body"] = body.decode("utf-8", "replace")
    AuditEvent.objects.create(
        user_id=target.user_id, username=target.username, source="kube-proxy",
        action=ACTIONS.get(verb, "action"), object_type=f"kubernetes.{kind}" + (f".{group}" if group else ""),
        object_id=name[:64], object_repr=f"{target.cluster_name}: {namespace + '/' if namespace else ''}{name or kind}"[:200],
        after=after, message=f"{verb} {path} -> {status}"[:300],
    )
