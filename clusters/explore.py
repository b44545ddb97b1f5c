"""The cluster explorer: inside one cluster, a side navigation by kind with counts, a namespace or
project selector that persists (in the session, per cluster), and sortable, filterable tables.

Kinds in Corral's inventory come from the database through the permission engine, in the same live
tables as every other page (``clusters.rows``); the others (Ingresses, ConfigMaps, Secrets, PVCs)
are read from the cluster on demand as the viewer (``clusters.kube.explorer``)."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, render

from clusters import rows
from clusters.kube import explorer
from clusters.models import Cluster, Namespace

# (slug, title, row kind in the inventory or None when read from the cluster)
KINDS = [
    ("workloads", "Workloads", "workload"), ("pods", "Pods", "pod"), ("services", "Services", "service"),
    ("ingresses", "Ingresses", None), ("configmaps", "ConfigMaps", None), ("secrets", "Secrets", None),
    ("persistentvolumeclaims", "PersistentVolumeClaims", None), ("nodes", "Nodes", "node"),
    ("namespaces", "Namespaces", "namespace"), ("events", "Events", "event"),
]
TITLES = {slug: title for slug, title, _ in KINDS}
ROW_KIND = {slug: kind for slug, _, kind in KINDS}


def _scope(request, cluster, namespaces, projects):
    """The selected namespace or project ('', 'namespace:<name>', 'project:<pk>'): from the query
    when given (and then remembered for this cluster), else the session's; one the viewer cannot
    see falls back to all."""
    key = f"explore-scope-{cluster.pk}"
    if "scope" in request.GET:
        scope = request.GET.get("scope", "")[:300].replace("\x00", "")
    else:
        scope = request.session.get(key, "")
    kind, _, value = scope.partition(":")
    if not ((kind == "namespace" and value in {ns.name for ns in namespaces})
            or (kind == "project" and value.isdigit() and int(value) in {p.pk for p in projects})):
        scope = ""
    if request.session.get(key, "") != scope:
        request.session[key] = scope
    return scope


def _selection(request, pk):
    """(cluster, namespaces, projects, scope, table filter, selected namespaces) for the viewer."""
    from projects.models import Project

    user = request.user
    cluster = get_object_or_404(Cluster.objects.restrict(user, "view"), pk=pk)
    namespaces = list(Namespace.objects.restrict(user, "view").filter(cluster=cluster).select_related("project"))
    projects = list(Project.objects.restrict(user, "view").filter(cluster=cluster).order_by("name"))
    scope = _scope(request, cluster, namespaces, projects)
    table_filter = {"cluster": str(cluster.pk)}
    selected = namespaces
    if scope.startswith("namespace:"):
        table_filter["namespace"] = scope.split(":", 1)[1]
        selected = [ns for ns in namespaces if ns.name == table_filter["namespace"]]
    elif scope.startswith("project:"):
        table_filter["project"] = scope.split(":", 1)[1]
        selected = [ns for ns in namespaces if str(ns.project_id) == table_filter["project"]]
    return cluster, namespaces, projects, scope, table_filter, selected


def _counts(user, table_filter):
    return {slug: rows.queryset(row_kind, user, table_filter).count() for slug, _, row_kind in KINDS if row_kind}


@login_required
def explore_counts(request, pk):
    """The side navigation's counts, as the page shows them (it asks again after live changes)."""
    _, _, _, _, table_filter, _ = _selection(request, pk)
    return JsonResponse(_counts(request.user, table_filter))


@login_required
def explore(request, pk, kind="workloads"):
    if kind not in TITLES:
        raise Http404("no such kind")
    user = request.user
    cluster, namespaces, projects, scope, table_filter, selected = _selection(request, pk)
    counts = _counts(user, table_filter)
    context = {
        "cluster": cluster, "kind": kind, "title": TITLES[kind], "nav_active": "clusters", "scope": scope,
        "project_options": [(f"project:{p.pk}", p.name) for p in projects],
        "namespace_options": [(f"namespace:{ns.name}", ns.name) for ns in namespaces],
        "kinds": [(slug, title, counts.get(slug)) for slug, title, _ in KINDS],
        "crumbs": [("Clusters", "/"), (cluster.name, f"/clusters/{cluster.pk}/"), ("Explore", None), (TITLES[kind], None)],
    }
    if ROW_KIND[kind]:
        context["table"] = rows.table(ROW_KIND[kind], user, table_filter, request=request)
    else:
        visible = [ns.name for ns in selected if ns.uid]
        everything = not scope and len(namespaces) == Namespace.objects.filter(cluster=cluster).count()
        context["listing"] = explorer.read(user, cluster, kind, visible, whole=everything)
        context["api_version"], context["object_kind"] = explorer.API_VERSIONS[kind], explorer.KINDS[kind]
    return render(request, "clusters/explore.html", context)
