"""The projects every imported cluster starts with: "System" (the cluster's own namespaces) and
"Default" (the default namespace).  Other namespaces stay unassigned until someone moves them."""

from clusters.models import Namespace
from projects.models import Project

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
DEFAULT_NAMESPACES = ("default",)


def create_default_projects(cluster):
    system, _ = Project.objects.get_or_create(
        cluster=cluster, name="System",
        defaults={"is_system": True, "description": "The cluster's own namespaces"},
    )
    default, _ = Project.objects.get_or_create(
        cluster=cluster, name="Default", defaults={"description": "The default namespace"},
    )
    # A Swarm has no system namespaces; its "default" stack holds the services outside any stack.
    system_namespaces = () if cluster.is_swarm else SYSTEM_NAMESPACES
    for names, project in ((system_namespaces, system), (DEFAULT_NAMESPACES, default)):
        for name in names:
            # A row with no uid yet: the inventory sync fills it in (it upserts by name).
            namespace, created = Namespace.objects.get_or_create(cluster=cluster, name=name, defaults={"project": project})
            if not created and namespace.project_id is None:
                namespace.project = project
                namespace.save(update_fields=["project"])
    return system, default
