"""Storing one Swarm service as the engine answered a change (create, scale, image update), so the
API's answer is the stored row at once; the inventory's sync and the event watcher confirm it."""

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from clusters.models import InventoryTombstone, Namespace, Workload
from clusters.swarm.workloads import DEFAULT_STACK, STACK_LABEL


def service_fields(attrs, running=None):
    """The Workload fields of an engine service (``docker service inspect``)."""
    spec = attrs.get("Spec") or {}
    mode = spec.get("Mode") or {}
    task = spec.get("TaskTemplate") or {}
    container = task.get("ContainerSpec") or {}
    replicated = "Replicated" in mode
    resources = task.get("Resources") or {}
    endpoint = attrs.get("Endpoint") or {}
    image = (container.get("Image") or "").split("@", 1)[0]
    fields = {
        "name": spec.get("Name", ""),
        "labels": spec.get("Labels") or {},
        "images": [image] if image else [],
        "resource_version": str((attrs.get("Version") or {}).get("Index", "")),
        "created_in_cluster": parse_datetime(attrs["CreatedAt"]) if attrs.get("CreatedAt") else None,
        "details": {
            "mode": "replicated" if replicated else "global",
            "ports": endpoint.get("Ports") or (spec.get("EndpointSpec") or {}).get("Ports") or [],
            "update_status": attrs.get("UpdateStatus") or {},
            "constraints": (task.get("Placement") or {}).get("Constraints") or [],
            "reservations": resources.get("Reservations") or {},
            "limits": resources.get("Limits") or {},
            "update_config": spec.get("UpdateConfig") or {},
        },
    }
    if replicated:
        fields["desired_replicas"] = int((mode["Replicated"] or {}).get("Replicas") or 0)
    if running is not None:
        fields["ready_replicas"] = fields["available_replicas"] = running
    return fields


def store_service(cluster, attrs, running=None):
    """Upsert the service's Workload row (kind "service") in its stack's Namespace row."""
    fields = service_fields(attrs, running)
    stack = fields["labels"].get(STACK_LABEL) or DEFAULT_STACK
    with transaction.atomic():
        namespace, _ = Namespace.objects.get_or_create(cluster=cluster, name=stack, defaults={"uid": ""})
        workload, _ = Workload.objects.update_or_create(
            cluster=cluster, uid=attrs["ID"],
            defaults={**fields, "namespace": namespace, "kind": Workload.Kind.SERVICE, "synced": timezone.now()},
        )
    return Workload.objects.select_related("cluster", "namespace").get(pk=workload.pk)


def forget_services(cluster, uids):
    """The services are gone from the swarm: drop their rows, and keep their ids a while so that a
    list read before the removal does not bring them back."""
    with transaction.atomic():
        Workload.objects.filter(cluster=cluster, uid__in=uids).delete()
        for uid in uids:
            InventoryTombstone.objects.update_or_create(cluster=cluster, uid=uid, defaults={"deleted": timezone.now()})
