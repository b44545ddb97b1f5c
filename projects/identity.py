"""The Kubernetes identity Corral gives each of its users: one user name and one group name per
Corral group, under a configurable prefix so they cannot collide with the cluster's own users."""

from django.conf import settings


def prefix():
    return settings.KUBE_IDENTITY_PREFIX


def user_name(username):
    return f"{prefix()}user:{username}"


def group_name(name):
    return f"{prefix()}group:{name}"


def administrators_group():
    """The group Corral's global administrators act in (bound to cluster-admin in every cluster);
    no Corral group can be named so (those are ``<prefix>group:<name>``)."""
    return f"{prefix()}administrators"


def kubernetes_user(user):
    return user_name(user.get_username())


def kubernetes_groups(user):
    return [group_name(g.name) for g in user.groups.order_by("name")]


def impersonation(user):
    """(user, groups) to impersonate ``user`` as in the clusters: its groups, and the administrators'
    group for a global administrator (the proxy, the explorer)."""
    from portal.permissions import is_global_admin

    groups = kubernetes_groups(user)
    if is_global_admin(user):
        groups = [*groups, administrators_group()]
    return kubernetes_user(user), groups


def subject(binding):
    """The RBAC subject of a role binding row (ProjectMembership or ClusterMembership)."""
    if binding.user_id:
        return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user_name(binding.user.get_username())}
    return {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group_name(binding.group.name)}
