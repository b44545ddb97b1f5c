"""Portal pages: plain server-rendered HTML, updated live over the websocket."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render

from clusters.models import Cluster, ClusterEvent, Node, Workload
from portal.models import Operation


class LoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    http_method_names = ["post", "options"]


@login_required
def dashboard(request):
    clusters = Cluster.objects.restrict(request.user, "view").with_summary()
    return render(request, "portal/dashboard.html", {"clusters": clusters})


@login_required
def cluster_detail(request, pk):
    cluster = get_object_or_404(Cluster.objects.restrict(request.user, "view").with_summary(), pk=pk)
    user = request.user
    context = {
        "cluster": cluster,
        "nodes": Node.objects.restrict(user, "view").filter(cluster=cluster)[:200],
        "workloads": Workload.objects.restrict(user, "view").filter(cluster=cluster).select_related("namespace")[:200],
        "events": ClusterEvent.objects.restrict(user, "view").filter(cluster=cluster).select_related("namespace")[:50],
        "operations": Operation.objects.restrict(user, "view").filter(cluster=cluster)[:10],
    }
    return render(request, "portal/cluster_detail.html", context)


@login_required
def operation_detail(request, pk):
    operation = get_object_or_404(Operation.objects.restrict(request.user, "view"), pk=pk)
    return render(request, "portal/operation_detail.html", {"operation": operation})


def healthz(request):
    """Liveness for load balancers: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
