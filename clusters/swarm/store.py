"""Storing one Swarm service as the engine answered a change (create, scale, image update), so the
API's answer is the stored row at once; the inventory's sync and the event watcher confirm it.
The mapping is the inventory's (clusters/swarm/inventory.py), the write the store's (never older
over newer, never a removed service back)."""

from django.db import transaction

from clusters.kube import store
from clusters.models import Namespace, Workload
from clusters.swarm import inventory


def store_service(cluster, attrs):
    """Upsert the service's Workload row (kind "service") in its stack's Namespace row."""
    row = inventory.service_fields(attrs)
    stack = row["details"]["stack"]
    with transaction.atomic():
        namespace = Namespace.objects.filter(cluster=cluster, name=stack).first()
        if namespace is None:
            namespace = Namespace.objects.create(cluster=cluster, name=stack, uid=f"stack:{stack}"[:64], phase="Active")
        row["namespace_id"] = namespace.pk
        failed = store.upsert(Workload, cluster, [row])
    if failed:  # the database refused the row: say so rather than answer with nothing
        raise RuntimeError(f"service {row['name']} is in the swarm but could not be stored: {failed[0][1]}")
    return Workload.objects.select_related("cluster", "namespace").get(cluster=cluster, uid=row["uid"])


def forget_services(cluster, uids):
    """The services are gone from the swarm: drop their rows (and their tasks' with them), and
    remember their ids so that a list read before the removal does not bring them back."""
    with transaction.atomic():
        Workload.objects.filter(cluster=cluster, uid__in=uids).delete()
        store.bury(cluster, uids)
