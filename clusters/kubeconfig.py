"""Kubeconfigs that point kubectl at Corral's Kubernetes API proxy: one context per cluster, each
file with a Corral token of its own (kind ``kubeconfig``: it works on ``/k8s/`` only), listed and
revocable with the user's other tokens."""

import base64

from django.conf import settings

from portal.models import ApiToken


def server_base(request=None):
    """Corral's own URL as kubectl should reach it: PORTAL_EXTERNAL_URL, else the request's."""
    if settings.EXTERNAL_URL:
        return settings.EXTERNAL_URL
    if request is not None:
        return request.build_absolute_uri("/").rstrip("/")
    return "http://127.0.0.1:8000"


def _ca_data():
    if not settings.TLS_CA_FILE:
        return None
    with open(settings.TLS_CA_FILE, "rb") as handle:
        return base64.b64encode(handle.read()).decode()


def issue(user, clusters, base, *, days=None, read_only=False):
    """(kubeconfig dict, token row) for ``clusters`` (already restricted to what ``user`` may see)."""
    clusters = list(clusters)
    days = settings.KUBECONFIG_TOKEN_DAYS if days is None else days
    names = ", ".join(c.name for c in clusters[:5]) + (f" and {len(clusters) - 5} more" if len(clusters) > 5 else "")
    what = f"kubeconfig: {names}" if clusters else "kubeconfig: no clusters yet"
    token, secret = ApiToken.issue(user, days=days, description=what[:200], read_only=read_only, kind=ApiToken.Kind.KUBECONFIG)
    user_entry = f"corral-{user.get_username()}"
    ca = _ca_data()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "contexts": [],
        "users": [{"name": user_entry, "user": {"token": secret}}],
        "current-context": clusters[0].slug if clusters else "",
        "preferences": {},
    }
    for cluster in clusters:
        entry = {"server": f"{base}/k8s/clusters/{cluster.pk}"}
        if ca:
            entry["certificate-authority-data"] = ca
        config["clusters"].append({"name": cluster.slug, "cluster": entry})
        config["contexts"].append({"name": cluster.slug, "context": {"cluster": cluster.slug, "user": user_entry}})
    return config, token
