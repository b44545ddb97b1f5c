"""Detail pages of the inventory: a namespace, a workload, a pod, a node, a Service.

Each is found through the permission engine (404 for whoever may not see it, as everywhere), says
where it lies (breadcrumbs: cluster → namespace → workload → pod), and lists its related objects
and events in live tables rendered by the one row template of each kind (``clusters.rows``).
"""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from clusters import rows
from clusters.models import Namespace, Node, Pod, Service, Workload
from portal.permissions import can


def _get(request, model, pk, *related):
    return get_object_or_404(model.objects.restrict(request.user, "view").select_related("cluster", *related), pk=pk)


def _usage(cluster):
    status = getattr(cluster, "usage_status", None) if hasattr(cluster, "usage_status") else None
    return {"usage_available": bool(status and status.available), "usage_error": status.error if status else ""}


def _crumbs(obj, *tail):
    """(label, url) from the cluster down to ``obj``."""
    cluster = obj.cluster
    crumbs = [("Clusters", reverse("dashboard")), (cluster.name, reverse("portal-cluster", args=[cluster.pk]))]
    namespace = obj if isinstance(obj, Namespace) else getattr(obj, "namespace", None)
    if namespace is not None:
        crumbs.append((namespace.name, reverse("portal-namespace", args=[namespace.pk])))
    crumbs.extend(tail)
    return crumbs


def _page(request, template, obj, crumbs, **context):
    user = request.user

    def table(kind, **f):
        return rows.table(kind, user, {"cluster": str(obj.cluster_id), **{k: str(v) for k, v in f.items()}}, request=request)

    context = {"object": obj, "cluster": obj.cluster, "crumbs": crumbs, "nav_active": "clusters", **_usage(obj.cluster),
               **{name: value(table) if callable(value) else value for name, value in context.items()}}
    return render(request, template, context)


@login_required
def namespace_detail(request, pk):
    ns = _get(request, Namespace, pk, "project")
    return _page(
        request, "clusters/namespace_detail.html", ns, _crumbs(ns),
        project_visible=bool(ns.project_id) and can(request.user, "view", ns.project),
        workloads=lambda t: t("workload", namespace=ns.name),
        pods=lambda t: t("pod", namespace=ns.name),
        services=lambda t: t("service", namespace=ns.name),
        events=lambda t: t("event", namespace=ns.name),
    )


@login_required
def workload_detail(request, pk):
    workload = _get(request, Workload, pk, "namespace")
    return _page(
        request, "clusters/workload_detail.html", workload, _crumbs(workload, (workload.name, None)),
        summary=lambda t: t("workload", id=workload.pk),
        services=Service.objects.restrict(request.user, "view").filter(namespace=workload.namespace)
        .filter(pk__in=[s.pk for s in Service.objects.filter(namespace=workload.namespace) if _selects(s.selector, workload.selector)]),
        pods=lambda t: t("pod", workload=workload.pk),
        events=lambda t: t("event", about=f"workload:{workload.pk}"),
    )


def _selects(service_selector, workload_selector):
    """Does a Service's selector pick the pods of a workload (its matchLabels)?"""
    labels = (workload_selector or {}).get("matchLabels") or {}
    return bool(service_selector) and all(labels.get(k) == v for k, v in service_selector.items())


@login_required
def pod_detail(request, pk):
    pod = _get(request, Pod, pk, "namespace", "workload", "node")
    user = request.user
    workload = pod.workload if pod.workload_id and can(user, "view", pod.workload) else None
    node = pod.node if pod.node_id and can(user, "view", pod.node) else None
    tail = [(workload.name, reverse("portal-workload", args=[workload.pk]))] if workload else []
    return _page(
        request, "clusters/pod_detail.html", pod, _crumbs(pod, *tail, (pod.name, None)),
        workload=workload, node=node, may_delete=can(user, "delete", pod),
        services=[s for s in Service.objects.restrict(user, "view").filter(namespace=pod.namespace)
                  if s.selector and all(pod.labels.get(k) == v for k, v in s.selector.items())],
        events=lambda t: t("event", about=f"pod:{pod.pk}"),
    )


@login_required
def node_detail(request, pk):
    node = _get(request, Node, pk)
    return _page(
        request, "clusters/node_detail.html", node, _crumbs(node, ("Nodes", None), (node.name, None)),
        node=node,
        pods=lambda t: t("pod", node=node.pk),
        events=lambda t: t("event", about=f"node:{node.pk}"),
    )


@login_required
def service_detail(request, pk):
    service = _get(request, Service, pk, "namespace")
    return _page(
        request, "clusters/service_detail.html", service, _crumbs(service, (service.name, None)),
        service=service,
        pods=lambda t: t("pod", service=service.pk),
        events=lambda t: t("event", about=f"service:{service.pk}"),
    )
