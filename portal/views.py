"""Portal pages: plain server-rendered HTML, updated live over the websocket."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render

from clusters import rows
from clusters.models import Cluster, Namespace, Node, Pod, Workload
from portal.models import Operation
from portal.permissions import ADD, can, can_add

LIST_LIMIT = 200


def query_text(request, name, limit=100):
    """A filter's text from the query string, without NUL characters (PostgreSQL refuses them)."""
    return request.GET.get(name, "").replace("\x00", "").strip()[:limit]


class LogoutView(auth_views.LogoutView):
    http_method_names = ["post", "options"]


def deploy_namespaces(user, cluster):
    """The namespaces of ``cluster`` where ``user`` may deploy workloads."""
    if cluster.state not in ("active", "updating"):
        return Namespace.objects.none()
    namespaces = Namespace.objects.filter(cluster=cluster)
    if not cluster.is_swarm:  # a stack is there as soon as something is deployed in it; a namespace must exist first
        namespaces = namespaces.exclude(uid="")
    if can_add(user, Workload, cluster=cluster):
        return namespaces
    return namespaces.filter(pk__in=Namespace.objects.restrict(user, ADD).values("pk"))


@login_required
def cluster_detail(request, pk):
    """One cluster: nodes, namespaces, workloads with their pods, events; ?q= and ?namespace= filter."""
    cluster = get_object_or_404(Cluster.objects.restrict(request.user, "view").with_summary(request.user), pk=pk)
    user, q, namespace = request.user, query_text(request, "q"), query_text(request, "namespace", 63)
    table_filter = {"cluster": str(cluster.pk), **({"namespace": namespace} if namespace else {}), **({"q": q} if q else {})}
    nodes = rows.table("node", user, {"cluster": str(cluster.pk)}, request=request)
    context = {
        "cluster": cluster, "q": q, "namespace": namespace, "nav_active": "clusters",
        "deploy_namespaces": deploy_namespaces(user, cluster),
        "nodes": nodes,
        # A project member may not see nodes: say so rather than "no nodes" (only when they truly may not).
        "nodes_hidden": not nodes["count"] and Node.objects.filter(cluster=cluster).exists(),
        "namespaces": Namespace.objects.restrict(user, "view").filter(cluster=cluster).select_related("project")[:LIST_LIMIT],
        "namespace_rows": rows.table("namespace", user, {"cluster": str(cluster.pk)}, request=request),
        "workloads": rows.table("workload", user, table_filter, request=request),
        "pods": rows.table("pod", user, table_filter, request=request),
        "events": rows.table("event", user, {k: v for k, v in table_filter.items() if k != "q"}, limit=50, request=request),
        "operations": Operation.objects.restrict(user, "view").filter(cluster=cluster)[:10],
        "sync_warnings": cluster.sync_warnings_for(user),
        "missing_apis": cluster.missing_apis_for(user),
        **capi_context(cluster, user),
        **usage_status(cluster),
        "may_change": can(user, "change", cluster),
        "may_remove": can(user, "delete", cluster),
    }
    return render(request, "portal/cluster_detail.html", context)


def capi_context(cluster, user):
    """A management cluster's ClusterClasses; a cluster made through Cluster API: its pools and
    what may be done to it."""
    context = {}
    if cluster.is_management:
        from clusters.capi.classes import classes_of

        context["cluster_classes"], context["cluster_classes_error"] = classes_of(cluster)
    if cluster.driver == "capi":
        context["capi"] = cluster.driver_config
    return context


def usage_status(cluster):
    """Whether the cluster serves usage metrics (monitoring's last collection says), for the charts."""
    status = getattr(cluster, "usage_status", None) if hasattr(cluster, "usage_status") else None
    return {"usage_available": bool(status and status.available), "usage_error": status.error if status else ""}


@login_required
def cluster_import(request):
    """Import a running cluster; Corral connects and checks before anything is stored."""
    from clusters.drivers import refuse_new_cluster
    from clusters.forms import ClusterImportForm

    problem = refuse_new_cluster(request.user, "imported")
    if problem:
        raise PermissionDenied(problem)
    form = ClusterImportForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        cluster = form.save(request.user)
        return redirect("portal-cluster", pk=cluster.pk)
    return render(request, "portal/cluster_import.html", {"form": form})


@login_required
def cluster_create(request):
    """Create a cluster: a form per driver (the sandbox: a name and a node count), posting to the
    API (the same checks and the same provisioning operation as every other client)."""
    from django.conf import settings

    from clusters.drivers import refuse_new_cluster

    problem = refuse_new_cluster(request.user, "imported")
    if problem:
        raise PermissionDenied(problem)
    from clusters.capi.classes import classes_of, management_clusters

    managers = [(mc, *classes_of(mc)) for mc in management_clusters(request.user)[:10]]
    return render(request, "portal/cluster_create.html", {
        "sandbox_refused": refuse_new_cluster(request.user, "sandbox"),
        "max_nodes": settings.SANDBOX_MAX_NODES,
        "management_clusters": managers,
    })


@login_required
def cluster_remove(request, pk):
    """Confirm a cluster's removal, naming what happens; the button starts the API's removal."""
    from clusters.lifecycle import removal_consequences

    cluster = get_object_or_404(Cluster.objects.restrict(request.user, "view"), pk=pk)
    if not can(request.user, "delete", cluster):
        raise PermissionDenied("removing a cluster needs the cluster owner role")
    return render(request, "portal/cluster_remove.html", {"cluster": cluster, "consequences": removal_consequences(cluster)})


@login_required
def cluster_members(request, pk):
    """Who holds which role on a cluster; whoever may grant there adds and removes members (through
    the API, which checks that nobody grants a role they do not hold)."""
    from clusters.models import ClusterMembership
    from clusters.roles import CLUSTER_MEMBER, CLUSTER_OWNER

    cluster = get_object_or_404(Cluster.objects.restrict(request.user, "view"), pk=pk)
    memberships = ClusterMembership.objects.restrict(request.user, "view").filter(cluster=cluster).select_related("user", "group")
    removable = set(ClusterMembership.objects.restrict(request.user, "delete").filter(cluster=cluster).values_list("pk", flat=True))
    return render(request, "portal/cluster_members.html", {
        "cluster": cluster, "memberships": memberships, "removable": removable,
        "may_add": can_add(request.user, ClusterMembership, cluster=cluster),
        "roles": [(CLUSTER_OWNER, "Cluster owner"), (CLUSTER_MEMBER, "Cluster member")],
    })


@login_required
def search(request):
    """Pods, workloads and nodes across every cluster the user may see."""
    q = query_text(request, "q")
    results = {}
    if q:
        user = request.user
        results = {
            "pods": Pod.objects.restrict(user, "view").filter(Q(name__icontains=q) | Q(images__icontains=q))
            .select_related("cluster", "namespace")[:LIST_LIMIT],
            "workloads": Workload.objects.restrict(user, "view").filter(Q(name__icontains=q) | Q(images__icontains=q))
            .select_related("cluster", "namespace")[:LIST_LIMIT],
            "nodes": Node.objects.restrict(user, "view").filter(name__icontains=q).select_related("cluster")[:LIST_LIMIT],
        }
        results["pods"] = list(results["pods"])
        results["visible_nodes"] = set(Node.objects.restrict(user, "view").filter(pk__in={p.node_id for p in results["pods"] if p.node_id})
                                       .values_list("pk", flat=True))
    return render(request, "portal/search.html", {"q": q, "results": results})


@login_required
def operation_detail(request, pk):
    operation = get_object_or_404(Operation.objects.restrict(request.user, "view"), pk=pk)
    return render(request, "portal/operation_detail.html", {"operation": operation})


def favicon(request):
    """Browsers ask for /favicon.ico whatever the page links: the SVG in static answers."""
    from django.templatetags.static import static

    return redirect(static("portal/favicon.svg"))

