"""The "Move to Kubernetes" page of a Swarm service or stack: choose a namespace you may deploy
to, review the YAML, what could not be translated and the Secrets/ConfigMaps to create, and apply.
The same code as the API (clusters/api/migration.py), so the same permission checks."""

import json

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from rest_framework import exceptions

from clusters.api import migration
from clusters.models import Namespace, Workload
from portal.permissions import VIEW


def _problem(exc):
    detail = exc.detail
    if isinstance(detail, dict):
        return "; ".join(f"{' '.join(map(str, v)) if isinstance(v, list) else v}" for v in detail.values())
    if isinstance(detail, list):
        return " ".join(map(str, detail))
    return str(detail)


def _page(request, source, back):
    choices = migration.targets(request.user)
    chosen = request.POST.get("target") if request.method == "POST" else request.GET.get("target")
    wanted = None
    if chosen:
        cluster_id, _, name = chosen.partition("/")
        wanted = {"cluster": int(cluster_id) if cluster_id.isdigit() else 0, "namespace": name}
    context = {"object": source, "cluster": source.cluster, "back": back, "choices": choices, "chosen": chosen or "",
               "nav_active": "clusters", "plan": None, "problem": "", "applied": False}
    status = 200
    try:
        plan = migration.migrate_source(request.user, source, wanted, apply=request.method == "POST")
        for item in plan["untranslated"]:
            value = item["value"]
            item["shown"] = value if isinstance(value, str) else json.dumps(value)
        context["plan"], context["applied"] = plan, request.method == "POST"
    except exceptions.APIException as exc:
        context["problem"], status = _problem(exc), exc.status_code
    return render(request, "clusters/migration.html", context, status=status)


@login_required
def workload_migration(request, pk):
    workload = get_object_or_404(Workload.objects.restrict(request.user, VIEW).select_related("cluster", "namespace"), pk=pk)
    return _page(request, workload, reverse("portal-workload", args=[workload.pk]))


@login_required
def namespace_migration(request, pk):
    namespace = get_object_or_404(Namespace.objects.restrict(request.user, VIEW).select_related("cluster", "project"), pk=pk)
    return _page(request, namespace, reverse("portal-namespace", args=[namespace.pk]))
