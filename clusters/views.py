"""Portal pages that speak to a cluster through Corral's Kubernetes API proxy: a pod's logs
(follow, previous container, search in the page), a shell into a container, and the YAML of an
object with edit-and-apply.  The page itself is shown only for an object the user may see (404
otherwise, as everywhere); everything it reads or changes goes through ``/k8s/`` with the user's
session, so the same decision and the cluster's own RBAC apply."""

import re
from types import SimpleNamespace

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from clusters.models import Cluster, Pod, Service, Workload

WORKLOAD_PATHS = {
    "deployment": ("apis/apps/v1", "deployments"), "statefulset": ("apis/apps/v1", "statefulsets"),
    "daemonset": ("apis/apps/v1", "daemonsets"), "job": ("apis/batch/v1", "jobs"), "cronjob": ("apis/batch/v1", "cronjobs"),
}


def _api_path(obj):
    namespace = obj.namespace.name
    if isinstance(obj, Pod):
        return f"/api/v1/namespaces/{namespace}/pods/{obj.name}"
    if isinstance(obj, Service):
        return f"/api/v1/namespaces/{namespace}/services/{obj.name}"
    prefix, plural = WORKLOAD_PATHS[obj.kind]
    return f"/{prefix}/namespaces/{namespace}/{plural}/{obj.name}"


def _visible(request, model, pk):
    return get_object_or_404(model.objects.restrict(request.user, "view").select_related("cluster", "namespace"), pk=pk)


def _context(obj):
    return {"object": obj, "cluster": obj.cluster, "proxy": f"/k8s/clusters/{obj.cluster_id}", "api_path": _api_path(obj)}


@login_required
def pod_logs(request, pk):
    return render(request, "clusters/pod_logs.html", _context(_visible(request, Pod, pk)))


# xterm.js draws with <style> elements it makes at run time: this page allows inline styles (scripts stay strict).
@login_required
@csp_update({"style-src": [UNSAFE_INLINE]})
def pod_shell(request, pk):
    return render(request, "clusters/pod_shell.html", _context(_visible(request, Pod, pk)))


@login_required
def pod_yaml(request, pk):
    return render(request, "clusters/object_yaml.html", _context(_visible(request, Pod, pk)))


@login_required
def workload_yaml(request, pk):
    return render(request, "clusters/object_yaml.html", _context(_visible(request, Workload, pk)))


@login_required
def service_yaml(request, pk):
    return render(request, "clusters/object_yaml.html", _context(_visible(request, Service, pk)))


# What an object's coordinates may hold: an API group/version, a kind, and names as Kubernetes
# allows them (RBAC objects have ":" in theirs).  Anything else is refused before the page is built.
OBJECT_PARAMS = {
    "apiVersion": re.compile(r"^(?:[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?v[0-9]+(?:(?:alpha|beta)[0-9]+)?$"),
    "kind": re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$"),
    "namespace": re.compile(r"^(?:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)?$"),
    "name": re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:@_-]{0,251}[A-Za-z0-9])?$"),
}


@login_required
def object_yaml(request, pk):
    """The YAML of any object of a cluster one may see, by its coordinates (``?apiVersion=apps/v1&
    kind=Deployment&namespace=web&name=shop``): the page finds the resource through the cluster's
    discovery and reads and writes it through the proxy, so the cluster's RBAC decides what is
    shown (a Secret's values masked until asked for) and whether Apply may change it."""
    cluster = get_object_or_404(Cluster.objects.restrict(request.user, "view"), pk=pk)
    values = {key: request.GET.get(key, "").strip() for key in OBJECT_PARAMS}
    problems = [
        f"{key} is required" if not value and key != "namespace" else f"{key} {value[:80]!r} is not a valid Kubernetes {key}"
        for key, value in values.items() if (not value and key != "namespace") or not OBJECT_PARAMS[key].match(value)
    ]
    target = SimpleNamespace(name=values["name"], namespace=SimpleNamespace(name=values["namespace"]), kind=values["kind"])
    context = {"object": target, "cluster": cluster, "proxy": f"/k8s/clusters/{cluster.pk}", "api_path": "", "coordinates": values, "problems": problems}
    return render(request, "clusters/object_yaml.html", context, status=400 if problems else 200)


def _download(request, clusters, filename):
    import yaml
    from django.http import HttpResponse

    from clusters import kubeconfig
    from portal.audit import record

    config, token = kubeconfig.issue(request.user, clusters, kubeconfig.server_base(request))
    record("create", token, after={"key_id": token.key_id, "kind": token.kind, "expires": token.expires.isoformat(), "read_only": False})
    response = HttpResponse(yaml.safe_dump(config, sort_keys=False), content_type="application/yaml")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def cluster_kubeconfig(request, pk):
    """Download a kubeconfig for one cluster (a POST: each makes a new token)."""
    cluster = get_object_or_404(Cluster.objects.restrict(request.user, "view").kubernetes(), pk=pk)  # a Swarm has no kubeconfig
    return _download(request, [cluster], f"{cluster.slug}.kubeconfig")


@login_required
@require_POST
def all_kubeconfig(request):
    """Download a kubeconfig with every cluster one may see."""
    return _download(request, Cluster.objects.restrict(request.user, "view").kubernetes().order_by("name", "pk"), "corral.kubeconfig")
