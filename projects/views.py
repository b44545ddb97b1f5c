"""Portal pages: the projects a user may see, each with its pool, allocation, usage, namespaces,
members and reconcile state."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from clusters.models import Cluster, Namespace
from clusters.roles import CLUSTER_MEMBER, CLUSTER_OWNER
from portal.permissions import CHANGE, VIEW, can, can_add, is_global_admin, scope_ids
from projects.models import Project, ProjectMembership
from projects.quotas import effective_quota, summary


def clusters_for_new_projects(user):
    """Clusters where ``user`` may create projects (administrators, cluster owners and members)."""
    visible = Cluster.objects.restrict(user, VIEW)
    if is_global_admin(user):
        return visible
    return visible.filter(pk__in=scope_ids(user, "cluster", {CLUSTER_OWNER, CLUSTER_MEMBER}))


@login_required
def project_list(request):
    projects = Project.objects.restrict(request.user, VIEW).select_related("cluster").prefetch_related("namespaces")
    rows = [{"project": p, "quota": summary(p), "namespaces": len(p.namespaces.all())} for p in projects[:500]]
    return render(request, "projects/project_list.html", {"rows": rows, "clusters": clusters_for_new_projects(request.user)})


@login_required
def project_detail(request, pk):
    project = get_object_or_404(Project.objects.restrict(request.user, VIEW).select_related("cluster"), pk=pk)
    namespaces = list(Namespace.objects.restrict(request.user, VIEW).filter(project=project))
    status = (project.quota_status or {}).get("namespaces", {})
    quota = summary(project, namespaces)
    context = {
        "project": project,
        "quota_rows": [(key, pool, quota["allocated"].get(key, "0"), quota["left"].get(key), quota["used"].get(key, "–"))
                       for key, pool in quota["pool"].items()],
        "namespaces": [{"ns": ns, "quota": effective_quota(project, ns.resource_quota), "own": bool(ns.resource_quota),
                        "used": status.get(ns.name, {}).get("used", {})} for ns in namespaces],
        "members": ProjectMembership.objects.filter(project=project).select_related("user", "group"),
        "may_change": can(request.user, CHANGE, project),
        "may_add_namespace": can_add(request.user, Namespace, project=project),
        "may_add_member": can_add(request.user, ProjectMembership, project=project),
        "unassigned": Namespace.objects.restrict(request.user, CHANGE).filter(cluster=project.cluster_id, project__isnull=True),
        "roles": ProjectMembership.Role.choices,
        **_usage_lines(project),
    }
    return render(request, "projects/project_detail.html", context)


def _usage_lines(project):
    """The project's quota as the usage charts' reference lines, and whether its cluster has metrics."""
    from clusters.kube.quantity import bytes_, millicores
    from portal.views import usage_status

    quota = project.resource_quota or {}

    def line(key, parse):
        return parse(quota[key]) if key in quota else None

    return {
        **usage_status(project.cluster),
        "cpu_requested": line("requests.cpu", millicores), "cpu_limit": line("limits.cpu", millicores),
        "memory_requested": line("requests.memory", bytes_), "memory_limit": line("limits.memory", bytes_),
    }
