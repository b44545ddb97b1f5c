"""Kinds Corral does not keep in its inventory (Ingresses, ConfigMaps, Secrets, PVCs), read on
demand for the cluster explorer, as the viewer: the request impersonates the viewer's Kubernetes
identity (as the kube-API proxy does), so the cluster's own RBAC decides what they may list, and
Corral lists only namespaces the permission engine lets them see.

Lists are asked for in Kubernetes' Table form (what ``kubectl get`` prints): names, the server's
columns and object metadata, never a Secret's data.
"""

import json
from dataclasses import dataclass, field

from django.conf import settings
from urllib3 import HTTPHeaderDict

from clusters.kube.client import api_client, describe_error

# kind -> (API group path, plural, title)
RESOURCES = {
    "ingresses": ("/apis/networking.k8s.io/v1", "ingresses", "Ingresses"),
    "configmaps": ("/api/v1", "configmaps", "ConfigMaps"),
    "secrets": ("/api/v1", "secrets", "Secrets"),
    "persistentvolumeclaims": ("/api/v1", "persistentvolumeclaims", "PersistentVolumeClaims"),
}
API_VERSIONS = {"ingresses": "networking.k8s.io/v1", "configmaps": "v1", "secrets": "v1", "persistentvolumeclaims": "v1"}
KINDS = {"ingresses": "Ingress", "configmaps": "ConfigMap", "secrets": "Secret", "persistentvolumeclaims": "PersistentVolumeClaim"}
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io, application/json"
# More namespaces than this and the explorer asks the viewer to pick one (one request each).
MAX_NAMESPACE_READS = 25
REACHABLE = ("active", "updating")


@dataclass
class Listing:
    columns: list = field(default_factory=list)  # column names after Name and Namespace
    rows: list = field(default_factory=list)  # {"namespace", "name", "cells", "created"}
    refused: list = field(default_factory=list)  # namespaces the cluster's RBAC refused to list
    error: str = ""


def identity_headers(user):
    """The impersonation headers of ``user`` (the proxy's identity: user, groups, administrators)."""
    from projects import identity

    name, groups = identity.impersonation(user)
    headers = HTTPHeaderDict()
    headers.add("Impersonate-User", name)
    for group in groups:
        headers.add("Impersonate-Group", group)
    return headers


def _get(api, path, user):
    headers = identity_headers(user)
    headers["Accept"] = TABLE
    token = (api.configuration.api_key or {}).get("authorization")
    if token:
        headers["Authorization"] = token
    response = api.rest_client.GET(api.configuration.host + path, headers=headers, query_params=[("limit", "500")],
                                   _request_timeout=api.corral_timeout)
    return json.loads(response.data)


def _rows(kind, table, columns, only):
    """Rows of a Table answer (or a plain list from a server that ignored the Table request)."""
    names = [c["name"] for c in table.get("columnDefinitions") or []]
    keep = [i for i, c in enumerate(table.get("columnDefinitions") or []) if c.get("priority", 0) == 0 and c["name"] not in ("Name", "Namespace")]
    if not columns:
        columns.extend(names[i] for i in keep)
    found = []
    for row in table.get("rows") or table.get("items") or []:
        meta = (row.get("object") or row).get("metadata") or {}
        if meta.get("namespace") not in only:
            continue
        cells = row.get("cells")
        found.append({"namespace": meta.get("namespace", ""), "name": meta.get("name", ""), "created": meta.get("creationTimestamp"),
                      "cells": [cells[i] for i in keep] if cells else []})
    return found


def read(user, cluster, kind, namespaces, whole=False):
    """The ``kind`` objects of ``namespaces`` (names the viewer may see in Corral) as ``user`` may
    list them in ``cluster``; ``whole``: one cluster-wide request (for a viewer who sees every
    namespace), else one per namespace.  Never raises for what the cluster says: the Listing
    carries the words."""
    from kubernetes.client.exceptions import ApiException

    listing = Listing()
    if cluster.is_swarm:
        listing.error = cluster.kubernetes_only(f"listing {RESOURCES[kind][2]}")
        return listing
    if cluster.state not in REACHABLE:
        why = f": {cluster.last_error}" if cluster.last_error else ""
        listing.error = f"The cluster is {cluster.state}{why}; {RESOURCES[kind][2]} are read from the cluster when it answers."
        return listing
    if not namespaces:
        return listing
    if len(namespaces) > MAX_NAMESPACE_READS and not whole:
        listing.error = f"You see {len(namespaces)} namespaces here: choose a namespace or a project to list {RESOURCES[kind][2]}."
        return listing
    prefix, plural, _ = RESOURCES[kind]
    only = set(namespaces)
    try:
        api = api_client(cluster.credentials, timeout=min(settings.KUBE_REQUEST_TIMEOUT, 10))
    except Exception as exc:  # noqa: BLE001 - words for the page
        listing.error = f"The cluster cannot be reached: {exc}"
        return listing
    paths = [(None, f"{prefix}/{plural}")] if whole else [(ns, f"{prefix}/namespaces/{ns}/{plural}") for ns in sorted(only)]
    with api:
        for namespace, path in paths:
            try:
                listing.rows.extend(_rows(kind, _get(api, path, user), listing.columns, only))
            except ApiException as exc:
                if exc.status in (401, 403):
                    listing.refused.append(namespace or "the whole cluster")
                    continue
                listing.error = f"The cluster cannot be reached: {describe_error(exc, cluster.api_endpoint)}"
                break
            except Exception as exc:  # noqa: BLE001 - a cluster that does not answer is a message, not a 500
                listing.error = f"The cluster cannot be reached: {describe_error(exc, cluster.api_endpoint)}"
                break
    listing.rows.sort(key=lambda r: (r["namespace"], r["name"]))
    return listing
