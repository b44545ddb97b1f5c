"""The dashboard: fleet health at a glance, then the clusters table, whose rows one template renders
both on page load and for live updates (live.js fetches a row's fragment when its cluster changes).

Every figure is counted through the permission engine (``restrict``): a tenant's counts only hold
what that tenant may see."""

from django.contrib.auth.decorators import login_required
from django.db.models import Count, F
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from clusters.models import Cluster, ClusterState, Node, Workload
from portal.permissions import CHANGE, DELETE, VIEW

LIST_LIMIT = 200
PAGE_SIZE = 50  # cluster rows a dashboard page renders (each row is a template with its figures)


def cluster_rows(user, clusters):
    """The rows' clusters with what ``user`` may do to each, in two queries whatever their number."""
    clusters = list(clusters)
    pks = [c.pk for c in clusters]
    removable = set(Cluster.objects.restrict(user, DELETE).filter(pk__in=pks).values_list("pk", flat=True))
    changeable = set(Cluster.objects.restrict(user, CHANGE).filter(pk__in=pks).values_list("pk", flat=True))
    for c in clusters:
        c.may_remove, c.may_change = c.pk in removable, c.pk in changeable
    return clusters


def fleet_health(user):
    """Counts for the dashboard's health strip, each only of what ``user`` may see."""
    from monitoring.models import Alert, AlertState

    by_state = dict(Cluster.objects.restrict(user, VIEW).order_by().values_list("state").annotate(n=Count("pk")))
    return {
        "states": [(value, label, by_state.get(value, 0)) for value, label in ClusterState.choices if by_state.get(value)],
        "clusters": sum(by_state.values()),
        "nodes_not_ready": Node.objects.restrict(user, VIEW).filter(ready=False).count(),
        "workloads_degraded": degraded(Workload.objects.restrict(user, VIEW)).count(),
        "alerts_firing": Alert.objects.restrict(user, VIEW).filter(state=AlertState.FIRING).count(),
    }


def degraded(workloads):
    """Workloads below their desired count (a Job or CronJob is not a long-running count)."""
    return workloads.filter(ready_replicas__lt=F("desired_replicas")).exclude(kind__in=["job", "cronjob"])


@login_required
def dashboard(request):
    from clusters.drivers import refuse_new_cluster

    clusters = Cluster.objects.restrict(request.user, VIEW).with_summary(request.user)
    state = request.GET.get("state", "")
    if state not in ClusterState.values:
        state = ""
    health = fleet_health(request.user)
    total = dict((value, n) for value, _, n in health["states"]).get(state, 0) if state else health["clusters"]
    pages = max(1, -(-total // PAGE_SIZE))
    try:
        page = min(max(1, int(request.GET.get("page", 1))), pages)
    except ValueError:
        page = 1
    start = (page - 1) * PAGE_SIZE
    shown = cluster_rows(request.user, (clusters.filter(state=state) if state else clusters)[start:start + PAGE_SIZE])
    return render(request, "portal/dashboard.html", {
        "clusters": shown, "state": state, "state_label": dict(ClusterState.choices).get(state, ""),
        "health": health, "page": page, "pages": pages, "total": total, "first": start + 1, "last": start + len(shown),
        "may_create": refuse_new_cluster(request.user, "imported") is None,
        "nav_active": "clusters",
    })


@require_GET
@login_required
def cluster_row(request, pk):
    """One dashboard row, for live.js: the very template the dashboard renders it with."""
    cluster = Cluster.objects.restrict(request.user, VIEW).with_summary(request.user).filter(pk=pk).first()
    if cluster is None:
        raise Http404("no such cluster")
    return render(request, "portal/_cluster_row.html", {"c": cluster_rows(request.user, [cluster])[0]})


@require_GET
@login_required
def fleet_health_fragment(request):
    """The health strip alone, for live.js to refresh it when something changes."""
    return render(request, "portal/_fleet_health.html", {"health": fleet_health(request.user), "state": request.GET.get("state", "")})


@require_GET
@login_required
def nodes_not_ready(request):
    """Nodes that are not ready, in every cluster the user may see."""
    nodes = Node.objects.restrict(request.user, VIEW).filter(ready=False).select_related("cluster").order_by("cluster__name", "name")
    return render(request, "portal/fleet_nodes.html", {"nodes": nodes[:LIST_LIMIT], "limit": LIST_LIMIT, "nav_active": "clusters"})


@require_GET
@login_required
def workloads_degraded(request):
    """Workloads below their desired count, in every cluster the user may see."""
    workloads = degraded(Workload.objects.restrict(request.user, VIEW)).select_related("cluster", "namespace").order_by("cluster__name", "namespace__name", "name")
    return render(request, "portal/fleet_workloads.html", {"workloads": workloads[:LIST_LIMIT], "limit": LIST_LIMIT, "nav_active": "clusters"})
