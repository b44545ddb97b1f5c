"""What a cluster's API server serves.  Not every cluster serves every API Corral reads: a group
may be turned off (``--runtime-config=batch/v1=false``), an API server may serve only a few groups
(CAPI's in-memory workload clusters), and an aggregated API whose backend is down fails discovery
(kubectl's "unable to retrieve the complete list of server APIs").  Corral syncs what is served and
says what is missing instead of failing the whole sync."""

import json

from kubernetes.client.exceptions import ApiException

from clusters.kube.client import describe_error


def _path_group_version(path):
    """'/apis/apps/v1/deployments' -> ('/apis/apps/v1', 'apps/v1', 'deployments')."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        return "/api/" + parts[1], parts[1], parts[2]
    return "/" + "/".join(parts[:3]), f"{parts[1]}/{parts[2]}", parts[3]


def _get(api, path):
    response = api.call_api(path, "GET", header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
                            _preload_content=False, _return_http_data_only=True, _request_timeout=api.corral_timeout)
    return json.loads(response.data or b"{}")


def _message(exc):
    try:
        return json.loads(exc.body or "{}").get("message") or exc.reason
    except (ValueError, TypeError, AttributeError):
        return exc.reason


def discover(api, resources):
    """Which of ``resources`` (name -> list path) the server serves; returns (served, missing).
    ``missing`` is a list of {"group_version", "resources", "reason", "served": False|None}:
    ``served`` False when the server does not serve them (404, or absent from the group's list),
    None when discovery failed (the server may still have them: a 5xx)."""
    by_group = {}
    for name, path in resources.items():
        base, group_version, plural = _path_group_version(path)
        by_group.setdefault((base, group_version), []).append((name, plural))
    served, missing = set(), []
    for (base, group_version), wanted in by_group.items():
        names = [name for name, _ in wanted]
        try:
            listed = {r.get("name") for r in _get(api, base).get("resources") or []}
        except ApiException as exc:
            if exc.status == 404:
                missing.append({"group_version": group_version, "resources": names, "served": False,
                                "reason": "not served by this API server"})
            elif exc.status in (401, 403):
                raise  # the credentials, not the API: the sync fails as it always has
            else:
                missing.append({"group_version": group_version, "resources": names, "served": None,
                                "reason": f"discovery failed: {exc.status} {_message(exc)}"})
            continue
        absent = [name for name, plural in wanted if plural not in listed]
        served.update(name for name, plural in wanted if plural in listed)
        if absent:
            missing.append({"group_version": group_version, "resources": absent, "served": False,
                            "reason": "not served by this API server"})
    return served, missing


def unavailable_api_services(api):
    """Aggregated APIs the server cannot reach (an APIService whose Available condition is not
    True): [{"group_version", "resources": [], "served": None, "reason"}].  Empty when the server
    has no aggregation layer or Corral may not read APIServices."""
    try:
        items = _get(api, "/apis/apiregistration.k8s.io/v1/apiservices").get("items") or []
    except ApiException:
        return []
    except Exception as exc:  # noqa: BLE001 - discovery of extras never fails a sync
        return [{"group_version": "apiregistration.k8s.io/v1", "resources": [], "served": None,
                 "reason": describe_error(exc, api.configuration.host)}]
    broken = []
    for item in items:
        spec = item.get("spec") or {}
        if not spec.get("service"):
            continue  # local (built-in) groups: always served by the API server itself
        available = next((c for c in (item.get("status") or {}).get("conditions") or [] if c.get("type") == "Available"), None)
        if available is not None and available.get("status") != "True":
            reason = available.get("message") or available.get("reason") or "unavailable"
            broken.append({"group_version": f"{spec.get('group')}/{spec.get('version')}", "resources": [], "served": None,
                           "reason": f"aggregated API unavailable: {reason}"[:500]})
    return sorted(broken, key=lambda m: m["group_version"])
