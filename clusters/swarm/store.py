"""Storing one Swarm service as the engine answered a change (create, scale, image update), so the
API's answer is the stored row at once, announced live to whoever may see it; the inventory's sync
and the event watcher confirm it.  The mapping, the write (never older over newer, never a removed
service back) and the announcements are the inventory's (clusters/swarm/inventory.py)."""

from django.db import transaction

from clusters.kube import store
from clusters.models import Namespace, Workload
from clusters.swarm import inventory
from portal.events import group_name


def store_service(cluster, attrs):
    """Upsert the service's Workload row (kind "service") in its stack's Namespace row."""
    row = inventory.service_fields(attrs)
    stack = row["details"]["stack"]
    change = inventory.Change(group_name("cluster", cluster.pk))
    with transaction.atomic():
        namespace = Namespace.objects.filter(cluster=cluster, name=stack).first()
        if namespace is None:
            namespace = Namespace.objects.create(cluster=cluster, name=stack, uid=f"stack:{stack}"[:64], phase="Active")
        row["namespace_id"] = namespace.pk
        failed = store.upsert(Workload, cluster, [row])
        if failed:  # the database refused the row: say so rather than answer with nothing
            raise RuntimeError(f"service {row['name']} is in the swarm but could not be stored: {failed[0][1]}")
        change.updated.append((Workload, row["uid"]))
        inventory.announce_changes(cluster, change)
    return Workload.objects.select_related("cluster", "namespace").get(cluster=cluster, uid=row["uid"])


def forget_services(cluster, uids):
    """The services are gone from the swarm: drop their rows (and their tasks' with them), say so
    to whoever could see them, and remember their ids so that a list read before the removal does
    not bring them back."""
    change = inventory.Change(group_name("cluster", cluster.pk))
    with transaction.atomic():
        for workload in Workload.objects.filter(cluster=cluster, uid__in=uids).select_related("namespace"):
            change.gone(workload)
        Workload.objects.filter(cluster=cluster, uid__in=uids).delete()
        store.bury(cluster, uids)
