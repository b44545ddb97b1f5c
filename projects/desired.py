"""What Corral wants in a cluster, computed from the database alone: the namespaces of its
projects, and in each one a ResourceQuota, a LimitRange and one RoleBinding per role that has
subjects; plus the cluster-wide bindings of cluster owners and members.  Every object carries the
managed-by label; the reconciler never touches an object without it (except to take back one of
its own names)."""

from dataclasses import dataclass, field

from clusters.models import ClusterMembership, Namespace
from clusters.roles import CLUSTER_MEMBER, CLUSTER_OWNER
from projects import identity
from projects.models import Project, ProjectMembership
from projects.quotas import effective_quota
from projects.roles import PROJECT_MEMBER, PROJECT_OWNER, PROJECT_READ_ONLY

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "corral"
SELECTOR = f"{MANAGED_BY}={MANAGER}"
PROJECT_LABEL = "corral.io/project"
QUOTA_NAME = "corral-quota"
LIMITS_NAME = "corral-limits"
RBAC = "rbac.authorization.k8s.io"

# Project roles onto Kubernetes' built-in ClusterRoles, one RoleBinding per (namespace, role).
PROJECT_ROLE_CLUSTERROLES = {PROJECT_OWNER: "admin", PROJECT_MEMBER: "edit", PROJECT_READ_ONLY: "view"}
CLUSTER_OWNER_BINDING = "corral-cluster-owners"
# Corral's global administrators (everything, everywhere): the proxy impersonates them with this group.
ADMINISTRATORS_BINDING = "corral-administrators"
CLUSTER_MEMBER_ROLE = "corral-cluster-member"
CLUSTER_MEMBER_BINDING = "corral-cluster-members"
CLUSTER_MEMBER_RULES = [{"apiGroups": [""], "resources": ["namespaces", "nodes"], "verbs": ["get", "list", "watch"]}]

# Kinds the reconciler manages: (list path for all namespaces, path template for one object).
NAMESPACED = {
    "resourcequotas": ("/api/v1/resourcequotas", "/api/v1/namespaces/{ns}/resourcequotas", "ResourceQuota", "v1"),
    "limitranges": ("/api/v1/limitranges", "/api/v1/namespaces/{ns}/limitranges", "LimitRange", "v1"),
    "rolebindings": (f"/apis/{RBAC}/v1/rolebindings", f"/apis/{RBAC}/v1/namespaces/{{ns}}/rolebindings", "RoleBinding", f"{RBAC}/v1"),
}
CLUSTER_SCOPED = {
    "clusterroles": (f"/apis/{RBAC}/v1/clusterroles", "ClusterRole", f"{RBAC}/v1"),
    "clusterrolebindings": (f"/apis/{RBAC}/v1/clusterrolebindings", "ClusterRoleBinding", f"{RBAC}/v1"),
}
# A LimitRange's container defaults, from the project's container_default_limits keys.
LIMIT_FIELDS = {"limits.cpu": ("default", "cpu"), "limits.memory": ("default", "memory"),
                "requests.cpu": ("defaultRequest", "cpu"), "requests.memory": ("defaultRequest", "memory")}


def binding_name(role):
    return f"corral-{role}"


def labels(project_id=None):
    out = {MANAGED_BY: MANAGER}
    if project_id is not None:
        out[PROJECT_LABEL] = str(project_id)
    return out


@dataclass
class Desired:
    # namespace name -> project id, for every namespace in a project
    namespaces: dict = field(default_factory=dict)
    # (kind, namespace, name) -> (project id, body)
    namespaced: dict = field(default_factory=dict)
    # (kind, name) -> body
    cluster_scoped: dict = field(default_factory=dict)
    projects: dict = field(default_factory=dict)  # project id -> Project


def _meta(name, project_id=None, namespace=None):
    meta = {"name": name, "labels": labels(project_id)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _subjects(bindings):
    return sorted((identity.subject(b) for b in bindings), key=lambda s: (s["kind"], s["name"]))


def quota_body(project, namespace, hard):
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": _meta(QUOTA_NAME, project.pk, namespace),
            "spec": {"hard": dict(hard)}}


def limits_body(project, namespace):
    limit = {"type": "Container"}
    for key, quantity in sorted(project.container_default_limits.items()):
        section, resource = LIMIT_FIELDS[key]
        limit.setdefault(section, {})[resource] = quantity
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": _meta(LIMITS_NAME, project.pk, namespace),
            "spec": {"limits": [limit]}}


def rolebinding_body(project_id, namespace, role, subjects):
    return {
        "apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
        "metadata": _meta(binding_name(role), project_id, namespace),
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": PROJECT_ROLE_CLUSTERROLES[role]},
        "subjects": subjects,
    }


def desired_state(cluster):
    want = Desired()
    projects = {p.pk: p for p in Project.objects.filter(cluster=cluster)}
    want.projects = projects
    by_role = {}
    memberships = ProjectMembership.objects.filter(project__cluster=cluster).select_related("user", "group")
    for m in memberships:
        by_role.setdefault(m.project_id, {}).setdefault(m.role, []).append(m)
    namespaces = Namespace.objects.filter(cluster=cluster, project__isnull=False).only("name", "project_id", "resource_quota")
    for ns in namespaces:
        project = projects[ns.project_id]
        want.namespaces[ns.name] = project.pk
        hard = effective_quota(project, ns.resource_quota)
        if hard:
            want.namespaced[("resourcequotas", ns.name, QUOTA_NAME)] = (project.pk, quota_body(project, ns.name, hard))
        if project.container_default_limits:
            want.namespaced[("limitranges", ns.name, LIMITS_NAME)] = (project.pk, limits_body(project, ns.name))
        for role, bindings in sorted(by_role.get(project.pk, {}).items()):
            body = rolebinding_body(project.pk, ns.name, role, _subjects(bindings))
            want.namespaced[("rolebindings", ns.name, binding_name(role))] = (project.pk, body)

    want.cluster_scoped[("clusterrolebindings", ADMINISTRATORS_BINDING)] = {
        "apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(ADMINISTRATORS_BINDING),
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "Group", "apiGroup": RBAC, "name": identity.administrators_group()}],
    }
    cluster_bindings = {}
    for m in ClusterMembership.objects.filter(cluster=cluster).select_related("user", "group"):
        cluster_bindings.setdefault(m.role, []).append(m)
    if cluster_bindings.get(CLUSTER_OWNER):
        want.cluster_scoped[("clusterrolebindings", CLUSTER_OWNER_BINDING)] = {
            "apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(CLUSTER_OWNER_BINDING),
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": _subjects(cluster_bindings[CLUSTER_OWNER]),
        }
    if cluster_bindings.get(CLUSTER_MEMBER):
        want.cluster_scoped[("clusterroles", CLUSTER_MEMBER_ROLE)] = {
            "apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(CLUSTER_MEMBER_ROLE),
            "rules": CLUSTER_MEMBER_RULES,
        }
        want.cluster_scoped[("clusterrolebindings", CLUSTER_MEMBER_BINDING)] = {
            "apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(CLUSTER_MEMBER_BINDING),
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": CLUSTER_MEMBER_ROLE},
            "subjects": _subjects(cluster_bindings[CLUSTER_MEMBER]),
        }
    return want
