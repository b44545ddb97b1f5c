"""The one permission mechanism: ``Model.objects.restrict(user, action)``.

Every API viewset, admin changelist, portal page and websocket subscription asks this queryset
method what a user may see or do, so the rule lives in one place.  A model says how its rows
relate to clusters and projects with ``restrict_scope`` and the lookups below; the roles bound to
the user (directly or through a group) do the rest.

Roles (Rancher's): a global administrator may do everything.  A cluster owner may do everything in
that cluster; a cluster member may view the cluster's cluster-scoped basics (the cluster, nodes,
namespaces) and create projects.  A project owner may do everything in the project; a project
member may view and change workloads in the project's namespaces; read-only may view.
"""

from django.db import models
from django.db.models import Q

VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"
ACTIONS = (VIEW, ADD, CHANGE, DELETE)

CLUSTER_OWNER, CLUSTER_MEMBER = "cluster-owner", "cluster-member"
PROJECT_OWNER, PROJECT_MEMBER, PROJECT_READ_ONLY = "project-owner", "project-member", "read-only"

# Which cluster roles allow an action on rows of a cluster.  ``basics`` are cluster-scoped
# objects that a cluster member may read.
CLUSTER_ROLES = {
    VIEW: {CLUSTER_OWNER},
    ADD: {CLUSTER_OWNER},
    CHANGE: {CLUSTER_OWNER},
    DELETE: {CLUSTER_OWNER},
}
CLUSTER_ROLES_BASICS = {**CLUSTER_ROLES, VIEW: {CLUSTER_OWNER, CLUSTER_MEMBER}}

# Which project roles allow an action on rows inside a project (workloads, pods, events...).
PROJECT_ROLES = {
    VIEW: {PROJECT_OWNER, PROJECT_MEMBER, PROJECT_READ_ONLY},
    ADD: {PROJECT_OWNER, PROJECT_MEMBER},
    CHANGE: {PROJECT_OWNER, PROJECT_MEMBER},
    DELETE: {PROJECT_OWNER, PROJECT_MEMBER},
}
# The project itself and its memberships: members read them, only owners change them.
PROJECT_ROLES_ADMIN = {**PROJECT_ROLES, ADD: {PROJECT_OWNER}, CHANGE: {PROJECT_OWNER}, DELETE: {PROJECT_OWNER}}


def is_global_admin(user):
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    cached = getattr(user, "_corral_is_admin", None)
    if cached is None:
        from portal.models import GlobalRole, GlobalRoleBinding

        cached = GlobalRoleBinding.objects.filter(
            Q(user=user) | Q(group__in=user.groups.all()), role=GlobalRole.ADMINISTRATOR
        ).exists()
        user._corral_is_admin = cached
    return cached


def _subject(user, prefix=""):
    return Q(**{f"{prefix}user": user}) | Q(**{f"{prefix}group__in": user.groups.all()})


def cluster_ids(user, roles):
    """Subquery of the clusters where the user holds one of ``roles``."""
    from clusters.models import ClusterMembership

    return ClusterMembership.objects.filter(_subject(user), role__in=roles).values("cluster_id")


def project_ids(user, roles):
    from projects.models import ProjectMembership

    return ProjectMembership.objects.filter(_subject(user), role__in=roles).values("project_id")


def clusters_of_projects(user, roles):
    from projects.models import ProjectMembership

    return ProjectMembership.objects.filter(_subject(user), role__in=roles).values("project__cluster_id")


def restriction(model, user, action):
    """The Q that limits ``model`` rows to those ``user`` may ``action``; None means all rows."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if is_global_admin(user):
        return None
    if not user.is_authenticated or not user.is_active:
        return Q(pk__in=[])

    scope = getattr(model, "restrict_scope", None)
    cluster = getattr(model, "restrict_cluster", None)
    project = getattr(model, "restrict_project", None)

    if scope == "cluster":
        # The cluster itself: owners and members, and anyone with a project in it may see it.
        q = Q(**{f"{cluster}__in" if cluster else "pk__in": cluster_ids(user, CLUSTER_ROLES_BASICS[action])})
        if action == VIEW:
            q |= Q(**{f"{cluster}__in" if cluster else "pk__in": clusters_of_projects(user, PROJECT_ROLES[VIEW])})
        return q
    if scope == "cluster-basics":
        return Q(**{f"{cluster}__in": cluster_ids(user, CLUSTER_ROLES_BASICS[action])})
    if scope in ("namespaced", "namespace", "project"):
        cluster_roles = CLUSTER_ROLES_BASICS if scope == "namespace" else CLUSTER_ROLES
        project_roles = PROJECT_ROLES_ADMIN if scope == "project" else PROJECT_ROLES
        q = Q(**{f"{cluster}__in": cluster_ids(user, cluster_roles[action])})
        q |= Q(**{f"{project}__in": project_ids(user, project_roles[action])})
        return q
    if scope == "owner":
        return Q(user=user)
    if scope == "operation":
        return Q(created_by=user) | Q(cluster__in=cluster_ids(user, CLUSTER_ROLES[VIEW]))
    if scope == "alert":
        # Alert rules and alerts of a cluster are for its owners; rules for all clusters, admins only.
        return Q(cluster__in=cluster_ids(user, CLUSTER_ROLES_BASICS[action] if action == VIEW else CLUSTER_ROLES[action]))
    # "global" (role bindings), "audit", notifiers and anything unscoped: administrators only.
    return Q(pk__in=[])


class RestrictedQuerySet(models.QuerySet):
    def restrict(self, user, action=VIEW):
        q = restriction(self.model, user, action)
        return self if q is None else self.filter(q)


def can(user, action, obj):
    """May ``user`` do ``action`` on the saved object ``obj``?"""
    q = restriction(type(obj), user, action)
    if q is None:
        return True
    return type(obj)._default_manager.filter(q, pk=obj.pk).exists()


def can_add(user, model, cluster=None, project=None):
    """May ``user`` create a ``model`` row in ``cluster`` (or in ``project``)?"""
    if is_global_admin(user):
        return True
    if not user.is_authenticated or not user.is_active:
        return False
    scope = getattr(model, "restrict_scope", None)
    if model.__name__ == "Cluster":
        # Any active user may register or provision a cluster; they become its owner.
        return True
    if model.__name__ == "Project" and cluster is not None:
        return cluster_ids(user, {CLUSTER_OWNER, CLUSTER_MEMBER}).filter(cluster_id=cluster.pk).exists()
    if project is not None and scope in ("project", "namespaced", "namespace"):
        roles = (PROJECT_ROLES_ADMIN if scope == "project" else PROJECT_ROLES)[ADD]
        if project_ids(user, roles).filter(project_id=project.pk).exists():
            return True
        cluster = project.cluster
    if cluster is not None and scope in ("cluster", "cluster-basics", "project", "namespaced", "namespace", "alert"):
        return cluster_ids(user, CLUSTER_ROLES[ADD]).filter(cluster_id=cluster.pk).exists()
    return False
