"""``{% usage_chart usage_cluster usage_kind usage_name as u %}``: what the usage charts need on any page
(``templates/monitoring/usage_charts.html``): whether the cluster has usage metrics, and the
reference lines (requested, limit, allocatable) of a node, workload or namespace, figured from
what the reader may see.  Values the including page passes (``cpu_requested=...``) win."""

from django import template
from django.db.models import Sum

from clusters.models import Node, Pod
from monitoring.models import ClusterUsageStatus
from portal.permissions import VIEW

register = template.Library()

LINES = ("cpu_requested", "cpu_limit", "cpu_allocatable", "memory_requested", "memory_limit", "memory_allocatable")
RUNNING = {"phase__in": ["Pending", "Running", "Unknown", ""]}  # terminated pods hold no requests


def _requested(pods):
    totals = pods.filter(**RUNNING).aggregate(cpu=Sum("cpu_request_m"), memory=Sum("memory_request_bytes"))
    return {"cpu_requested": totals["cpu"] or 0, "memory_requested": totals["memory"] or 0}


def lines(user, cluster_id, kind, name):
    """Reference lines for a node (its allocatable and what its pods request: node-level figures,
    as the requested-percent alerts tell the cluster's members), a workload or a namespace (what
    their pods request, of the pods the reader may see)."""
    if kind == "node":
        node = Node.objects.restrict(user, VIEW).filter(cluster_id=cluster_id, name=name).first()
        if node is None:
            return {}
        return {"cpu_allocatable": node.cpu_allocatable_m or None, "memory_allocatable": node.memory_allocatable_bytes or None,
                **_requested(Pod.objects.filter(node=node))}
    pods = Pod.objects.restrict(user, VIEW).filter(cluster_id=cluster_id)
    if kind == "namespace":
        return _requested(pods.filter(namespace__name=name))
    if kind == "workload" and "/" in (name or ""):
        namespace, workload = name.split("/", 1)
        pods = pods.filter(namespace__name=namespace, workload__name=workload)
        return _requested(pods) if pods.exists() else {}
    return {}


@register.simple_tag(takes_context=True)
def usage_chart(context, cluster_id, kind, name):
    request = context.get("request")
    user = getattr(request, "user", None)
    status = ClusterUsageStatus.objects.filter(cluster_id=cluster_id).first() if str(cluster_id).isdigit() else None
    found = lines(user, cluster_id, kind, str(name)) if user is not None and status and status.available else {}
    for key in LINES:
        given = context.get(key)
        if given not in (None, ""):
            found[key] = given
    return {"available": bool(status and status.available), "error": status.error if status else "", **found}
