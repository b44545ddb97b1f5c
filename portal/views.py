"""Portal pages: plain server-rendered HTML, updated live over the websocket."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render

from clusters.explain import why_not_ready
from clusters.models import Cluster, ClusterEvent, Namespace, Node, Pod, Workload
from portal.models import Operation
from portal.permissions import ADD, can, can_add

LIST_LIMIT = 200


def query_text(request, name, limit=100):
    """A filter's text from the query string, without NUL characters (PostgreSQL refuses them)."""
    return request.GET.get(name, "").replace("\x00", "").strip()[:limit]


class LogoutView(auth_views.LogoutView):
    http_method_names = ["post", "options"]


@login_required
def dashboard(request):
    from clusters.drivers import refuse_new_cluster

    clusters = Cluster.objects.restrict(request.user, "view").with_summary(request.user)
    may_create = refuse_new_cluster(request.user, "imported") is None
    return render(request, "portal/dashboard.html", {"clusters": clusters, "may_create": may_create})


def deploy_namespaces(user, cluster):
    """The namespaces of ``cluster`` where ``user`` may deploy workloads."""
    if cluster.state not in ("active", "updating"):
        return Namespace.objects.none()
    namespaces = Namespace.objects.filter(cluster=cluster).exclude(uid="")
    if can_add(user, Workload, cluster=cluster):
        return namespaces
    return namespaces.filter(pk__in=Namespace.objects.restrict(user, ADD).values("pk"))


@login_required
def cluster_detail(request, pk):
    """One cluster: nodes, namespaces, workloads with their pods, events; ?q= and ?namespace= filter."""
    cluster = get_object_or_404(Cluster.objects.restrict(request.user, "view").with_summary(request.user), pk=pk)
    user, q, namespace = request.user, query_text(request, "q"), query_text(request, "namespace", 63)
    workloads = Workload.objects.restrict(user, "view").filter(cluster=cluster).select_related("namespace")
    pods = Pod.objects.restrict(user, "view").filter(cluster=cluster).select_related("namespace")
    events = ClusterEvent.objects.restrict(user, "view").filter(cluster=cluster).select_related("namespace")
    if namespace:
        workloads, pods, events = (qs.filter(namespace__name=namespace) for qs in (workloads, pods, events))
    if q:
        workloads = workloads.filter(Q(name__icontains=q) | Q(images__icontains=q))
        pods = pods.filter(Q(name__icontains=q) | Q(images__icontains=q) | Q(node_name__icontains=q))
    workloads, pods = list(workloads[:LIST_LIMIT]), list(pods[:LIST_LIMIT])
    why = why_not_ready(workloads, events)
    context = {
        "cluster": cluster, "q": q, "namespace": namespace,
        "changeable": set(Workload.objects.restrict(user, "change").filter(pk__in=[w.pk for w in workloads]).values_list("pk", flat=True)),
        "deletable": set(Pod.objects.restrict(user, "delete").filter(pk__in=[p.pk for p in pods]).values_list("pk", flat=True)),
        "deploy_namespaces": deploy_namespaces(user, cluster),
        "nodes": Node.objects.restrict(user, "view").filter(cluster=cluster)[:LIST_LIMIT],
        "namespaces": Namespace.objects.restrict(user, "view").filter(cluster=cluster).select_related("project")[:LIST_LIMIT],
        "workloads": workloads,
        "pods": pods,
        "events": events[:50],
        "why": why,
        "operations": Operation.objects.restrict(user, "view").filter(cluster=cluster)[:10],
        "sync_warnings": cluster.sync_warnings_for(user),
        **usage_status(cluster),
        "may_change": can(user, "change", cluster),
        "may_remove": can(user, "delete", cluster),
    }
    return render(request, "portal/cluster_detail.html", context)


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
    return render(request, "portal/cluster_create.html", {
        "sandbox_refused": refuse_new_cluster(request.user, "sandbox"),
        "max_nodes": settings.SANDBOX_MAX_NODES,
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
    return render(request, "portal/search.html", {"q": q, "results": results})


@login_required
def operation_detail(request, pk):
    operation = get_object_or_404(Operation.objects.restrict(request.user, "view"), pk=pk)
    return render(request, "portal/operation_detail.html", {"operation": operation})
