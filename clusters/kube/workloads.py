"""Changing workloads in a cluster: deploy, scale, expose, delete.  Raw JSON calls through the one
client factory; every failure becomes a WorkloadError with words for people."""

import json

from kubernetes.client.exceptions import ApiException

from clusters.kube.client import describe_error

APPS = {"deployment": "deployments", "statefulset": "statefulsets", "daemonset": "daemonsets"}
KIND_PATHS = {
    "deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "statefulset": "/apis/apps/v1/namespaces/{ns}/statefulsets",
    "daemonset": "/apis/apps/v1/namespaces/{ns}/daemonsets",
    "job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "cronjob": "/apis/batch/v1/namespaces/{ns}/cronjobs",
}
SCALABLE = {"deployment", "statefulset"}


class WorkloadError(Exception):
    """``status`` is the HTTP status Corral should answer with."""

    def __init__(self, status, message, cluster_status=None):
        self.status, self.message = status, message
        self.cluster_status = cluster_status  # what the API server answered, when it answered
        super().__init__(message)


def call(api, method, path, body=None, content_type="application/json"):
    try:
        response = api.call_api(
            path, method, body=body, header_params={"Accept": "application/json", "Content-Type": content_type},
            auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
            _request_timeout=api.corral_timeout,
        )
    except ApiException as exc:
        raise WorkloadError(*_explain(exc), cluster_status=exc.status) from None
    except Exception as exc:
        raise WorkloadError(503, describe_error(exc, api.configuration.host)) from None
    return json.loads(response.data) if response.data else {}


def _explain(exc):
    """(status, message) for an error the API server answered with."""
    message = exc.reason or "error"
    try:
        message = json.loads(exc.body or "{}").get("message") or message
    except (ValueError, TypeError, AttributeError):
        pass
    if exc.status == 409:
        return 400, f"already exists: {message}"
    if exc.status == 422:
        return 400, f"the cluster refused it: {message}"
    if exc.status == 404:
        return 404, f"not found in the cluster: {message}"
    if exc.status in (401, 403):
        return 502, f"the cluster refused Corral's credentials: {message}"
    return 502, f"the cluster answered {exc.status}: {message}"


def deploy(api, namespace, name, image, replicas, ports=(), env=(), resources=None):
    """Create a Deployment like `kubectl create deployment NAME --image=IMAGE --replicas=N
    --port=PORT`, with environment variables and resources."""
    container = {"name": name, "image": image}
    if ports:
        container["ports"] = [{"containerPort": port, "protocol": "TCP"} for port in ports]
    if env:
        container["env"] = list(env)
    if resources:
        container["resources"] = resources
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }
    return call(api, "POST", KIND_PATHS["deployment"].format(ns=namespace), body)


def scale(api, kind, namespace, name, replicas):
    if kind not in SCALABLE:
        raise WorkloadError(400, f"a {kind} cannot be scaled")
    path = f"{KIND_PATHS[kind].format(ns=namespace)}/{name}"
    return call(api, "PATCH", path, {"spec": {"replicas": replicas}}, content_type="application/merge-patch+json")


def set_image(api, kind, namespace, name, image):
    """`kubectl set image` for a workload of one container: its image replaced, rolled out by the
    workload's own update strategy."""
    if kind not in APPS:
        raise WorkloadError(400, f"a {kind}'s image is not changed here")
    path = f"{KIND_PATHS[kind].format(ns=namespace)}/{name}"
    current = call(api, "GET", path)
    containers = (((current.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    if len(containers) != 1:
        raise WorkloadError(400, f"{kind} {name} has {len(containers)} containers; Corral changes the image of one-container workloads")
    patch = [{"op": "test", "path": "/spec/template/spec/containers/0/name", "value": containers[0]["name"]},
             {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]
    return call(api, "PATCH", path, patch, content_type="application/json-patch+json")


def expose(api, namespace, workload_name, selector, port, target_port=None, service_type="ClusterIP", name=None):
    """Create a Service for the workload's pods, like `kubectl expose deployment NAME --port=PORT
    [--name=SERVICE]`."""
    if not selector:
        raise WorkloadError(400, "the workload has no label selector to expose")
    body = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name or workload_name, "labels": {"app": workload_name}},
        "spec": {"type": service_type, "selector": selector,
                 "ports": [{"port": port, "targetPort": target_port or port, "protocol": "TCP"}]},
    }
    return call(api, "POST", f"/api/v1/namespaces/{namespace}/services", body)


def delete(api, kind, namespace, name):
    path = f"{KIND_PATHS[kind].format(ns=namespace)}/{name}" if kind in KIND_PATHS else f"/api/v1/namespaces/{namespace}/{kind}/{name}"
    return call(api, "DELETE", path, {"propagationPolicy": "Background"})
