"""How projects and what lives in their namespaces are scoped (registered with the permission
engine in ``ProjectsConfig.ready``, after the clusters app)."""

from clusters.permissions import OWNER_ONLY
from clusters.roles import CLUSTER_MEMBER, CLUSTER_OWNER
from portal import permissions as p
from projects.roles import PROJECT_MEMBER, PROJECT_OWNER, PROJECT_READ_ONLY

ALL_ROLES = frozenset({PROJECT_OWNER, PROJECT_MEMBER, PROJECT_READ_ONLY})
# Rows inside a project (namespaces, workloads, pods, events): every role reads, owners and
# members change.
CONTENT = {p.VIEW: ALL_ROLES, **{a: frozenset({PROJECT_OWNER, PROJECT_MEMBER}) for a in (p.ADD, p.CHANGE, p.DELETE)}}
# The project itself and its memberships: members read them, only owners change them.
ADMINISTRATION = {p.VIEW: ALL_ROLES, **{a: frozenset({PROJECT_OWNER}) for a in (p.ADD, p.CHANGE, p.DELETE)}}


def register():
    from clusters.models import Cluster, ClusterEvent, Namespace, Pod, Service, SwarmObject, Workload
    from portal import events
    from projects.models import Project, ProjectMembership

    p.register_scope(
        "project", lambda: ProjectMembership.objects.all(), "project_id",
        parents={"cluster": "project__cluster_id"}, parent_ids=lambda project: {"cluster": project.cluster_id},
    )
    # Anyone with a role in one of its projects sees the cluster itself.
    p.extend(Cluster, p.Grant("project", "pk", {p.VIEW: ALL_ROLES}, via="cluster"))
    # Cluster owners run every project; cluster members may create projects.
    p.register(
        Project,
        p.Grant("cluster", "cluster", {**OWNER_ONLY, p.ADD: frozenset({CLUSTER_OWNER, CLUSTER_MEMBER})}),
        p.Grant("project", "pk", ADMINISTRATION),
    )
    p.register(ProjectMembership, p.Grant("cluster", "project__cluster", OWNER_ONLY), p.Grant("project", "project", ADMINISTRATION))
    p.extend(Namespace, p.Grant("project", "project", CONTENT))
    for model in (Workload, Pod, Service, ClusterEvent, SwarmObject):
        p.extend(model, p.Grant("project", "namespace__project", CONTENT))
    events.register_topic("project", Project)  # the project page follows it live
