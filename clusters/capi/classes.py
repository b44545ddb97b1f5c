"""A management cluster's ClusterClasses, read from its API, and a topology checked against one."""

import re

import jsonschema

from clusters.capi import API
from clusters.kube.workloads import WorkloadError, call
from portal.validators import MAX_ID

VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_REPLICAS = 1000


class CapiError(Exception):
    """``status``: what Corral answers (400 for input, 502/503 for the management cluster)."""

    def __init__(self, status, message):
        self.status, self.message = status, message
        super().__init__(message)


def serves_capi(api):
    """Does the API server serve Cluster API (its CRDs are installed)?"""
    try:
        call(api, "GET", API)
    except WorkloadError as exc:
        if exc.cluster_status == 404:
            return False
        raise CapiError(503, exc.message) from None
    return True


def management_problem(cluster):
    """Why ``cluster`` cannot be marked as a management cluster (it must be one Corral manages,
    and it must serve Cluster API), or None.  The API and the admin both ask here."""
    from clusters.kube.client import api_client

    if cluster.pk is None or not cluster.credentials:
        return "only a cluster Corral manages already can be a management cluster"
    try:
        with api_client(cluster.credentials) as api:
            served = serves_capi(api)
    except CapiError as exc:
        return f"cannot check for Cluster API: {exc.message}"
    except Exception as exc:  # noqa: BLE001 - the cluster not answering is the answer
        return f"cannot check for Cluster API: {exc}"
    if not served:
        return "this cluster does not serve Cluster API (cluster.x-k8s.io/v1beta2): install its controllers first"
    return None


def _variables(obj):
    """The class's variables: its status lists every definition (its own and from extensions)."""
    found = {}
    for var in (obj.get("status") or {}).get("variables") or []:
        definition = next(iter(var.get("definitions") or []), {})
        found[var["name"]] = {"required": bool(definition.get("required")), "schema": (definition.get("schema") or {}).get("openAPIV3Schema") or {}}
    for var in (obj.get("spec") or {}).get("variables") or []:
        found.setdefault(var["name"], {"required": bool(var.get("required")), "schema": (var.get("schema") or {}).get("openAPIV3Schema") or {}})
    return [{"name": name, "required": v["required"], "type": v["schema"].get("type", ""), "description": v["schema"].get("description", ""),
             "default": v["schema"].get("default"), "schema": v["schema"]} for name, v in sorted(found.items())]


def summary(obj):
    """What Corral shows of a ClusterClass, and what it checks a request against."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    conditions = (obj.get("status") or {}).get("conditions") or []
    return {
        "name": meta.get("name", ""), "namespace": meta.get("namespace", ""),
        "kubernetes_versions": list(spec.get("kubernetesVersions") or []),
        "worker_classes": [md.get("class", "") for md in (spec.get("workers") or {}).get("machineDeployments") or []],
        "variables": _variables(obj),
        "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")} for c in conditions],
    }


def list_classes(api, namespace=None):
    path = f"{API}/namespaces/{namespace}/clusterclasses" if namespace else f"{API}/clusterclasses"
    try:
        items = call(api, "GET", path).get("items") or []
    except WorkloadError as exc:
        if exc.cluster_status == 404:
            raise CapiError(400, "this cluster does not serve Cluster API (cluster.x-k8s.io/v1beta2)") from None
        raise CapiError(502, exc.message) from None
    return sorted((summary(item) for item in items), key=lambda c: (c["namespace"], c["name"]))


def get_class(api, namespace, name):
    try:
        return summary(call(api, "GET", f"{API}/namespaces/{namespace}/clusterclasses/{name}"))
    except WorkloadError as exc:
        if exc.cluster_status == 404:
            return None
        raise CapiError(502, exc.message) from None


def _replicas(value, field, errors):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_REPLICAS:
        errors[field] = f"must be a whole number from 0 to {MAX_REPLICAS}"
        return False
    return True


def check_shape(config):
    """Errors in ``config`` that need no management cluster: {field: message}."""
    errors = {}
    if not isinstance(config, dict):
        return {"driver_config": "must be an object"}
    known = {"management_cluster", "class", "namespace", "version", "control_plane_replicas", "workers", "variables"}
    for extra in sorted(set(config) - known):
        errors[extra] = "unknown option; the options are " + ", ".join(sorted(known))
    mc = config.get("management_cluster")
    if not isinstance(mc, int) or isinstance(mc, bool) or not 1 <= mc <= MAX_ID:
        errors["management_cluster"] = "the id of a management cluster is required"
    if not isinstance(config.get("class"), str) or not config.get("class"):
        errors["class"] = "the name of a ClusterClass is required"
    ns = config.get("namespace", "default")
    if not isinstance(ns, str) or not NAME_RE.match(ns) or len(ns) > 63:
        errors["namespace"] = "must be a namespace name (lowercase letters, digits and '-')"
    version = config.get("version")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        errors["version"] = "a Kubernetes version such as v1.35.0 is required"
    _replicas(config.get("control_plane_replicas", 1), "control_plane_replicas", errors)
    workers = config.get("workers", [])
    if not isinstance(workers, list):
        errors["workers"] = "must be a list of {name, class, replicas}"
    else:
        seen = set()
        for index, pool in enumerate(workers):
            where = f"workers[{index}]"
            if not isinstance(pool, dict):
                errors[where] = "must be an object {name, class, replicas}"
                continue
            for extra in sorted(set(pool) - {"name", "class", "replicas"}):
                errors[f"{where}.{extra}"] = "unknown option; a pool has name, class and replicas"
            name = pool.get("name")
            if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 63:
                errors[f"{where}.name"] = "a pool name (lowercase letters, digits and '-') is required"
            elif name in seen:
                errors[f"{where}.name"] = f"two pools are named {name!r}"
            seen.add(name)
            if not isinstance(pool.get("class"), str) or not pool.get("class"):
                errors[f"{where}.class"] = "the worker class of the pool is required"
            _replicas(pool.get("replicas", 1), f"{where}.replicas", errors)
    if not isinstance(config.get("variables", {}), dict):
        errors["variables"] = "must be an object of variable name to value"
    return errors


def check_against_class(config, cls):
    """Errors of a well-shaped ``config`` against the ClusterClass summary ``cls``."""
    errors = {}
    offered = cls["kubernetes_versions"]
    if offered and config["version"] not in offered:
        errors["version"] = f"the class {cls['name']!r} offers " + ", ".join(offered)
    for index, pool in enumerate(config.get("workers", [])):
        if pool["class"] not in cls["worker_classes"]:
            errors[f"workers[{index}].class"] = (f"the class {cls['name']!r} has no worker class {pool['class']!r}; it has "
                                                 + (", ".join(cls["worker_classes"]) or "none"))
    defined = {v["name"]: v for v in cls["variables"]}
    values = config.get("variables", {})
    for name in sorted(set(values) - set(defined)):
        errors[f"variables.{name}"] = f"the class {cls['name']!r} has no such variable; it has " + (", ".join(defined) or "none")
    for name, var in defined.items():
        if name not in values:
            if var["required"] and var.get("default") is None:
                errors[f"variables.{name}"] = "required by the class"
            continue
        problem = schema_error(values[name], var["schema"])
        if problem:
            errors[f"variables.{name}"] = problem
    return errors


def _openapi_to_jsonschema(schema):
    """OpenAPI v3 ``nullable`` as JSON Schema types; Kubernetes' x- extensions are dropped."""
    if isinstance(schema, list):
        return [_openapi_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _openapi_to_jsonschema(v) for k, v in schema.items() if not k.startswith("x-") and k != "nullable"}
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def schema_error(value, schema):
    """Why ``value`` does not match the variable's OpenAPI v3 schema (None when it does)."""
    try:
        validator = jsonschema.Draft4Validator(_openapi_to_jsonschema(schema))
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except jsonschema.exceptions.SchemaError as exc:
        return f"the class's schema for it cannot be read: {exc.message}"
    if error is None:
        return None
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{where.lstrip('.') + ': ' if where else ''}{error.message}"


def management_clusters(user):
    """The management clusters ``user`` may provision on: those they may see."""
    from clusters.models import Cluster

    return Cluster.objects.restrict(user, "view").filter(is_management=True, state__in=["active", "updating"])


def check_request(config, user):
    """A ``capi`` driver_config checked against the management cluster and its ClusterClass;
    returns (the config with its defaults, {field: message}).  A management cluster ``user`` may
    not see is answered as one that does not exist."""
    from clusters.kube.client import api_client

    errors = check_shape(config)
    if errors:
        return config, errors
    config = {"namespace": "default", "control_plane_replicas": 1, "workers": [], "variables": {}, **config}
    config["workers"] = [{"replicas": 1, **pool} for pool in config["workers"]]
    mc = management_clusters(user).filter(pk=config["management_cluster"]).first()
    if mc is None:
        return config, {"management_cluster": f"no management cluster with id {config['management_cluster']} (that you may use)"}
    try:
        api = api_client(mc.credentials)
        try:
            cls = get_class(api, config["namespace"], config["class"])
        finally:
            api.close()
    except CapiError as exc:
        return config, {"management_cluster": f"its ClusterClasses cannot be read: {exc.message}"}
    except Exception as exc:  # noqa: BLE001 - the management cluster not answering is an answer too
        return config, {"management_cluster": f"its ClusterClasses cannot be read: {exc}"}
    if cls is None:
        return config, {"class": f"no ClusterClass {config['class']!r} in namespace {config['namespace']!r} of {mc.name}"}
    return config, check_against_class(config, cls)


def classes_of(mc):
    """(ClusterClasses of the management cluster ``mc``, None) or ([], why they cannot be read)."""
    from clusters.kube.client import api_client

    try:
        api = api_client(mc.credentials)
        try:
            return list_classes(api), None
        finally:
            api.close()
    except CapiError as exc:
        return [], exc.message
    except Exception as exc:  # noqa: BLE001 - shown on the page: the management cluster does not answer
        return [], str(exc)
