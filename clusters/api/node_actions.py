"""Node maintenance through the API: cordon and uncordon answer at once; a drain is an operation
(cordon, then evict each pod through the Eviction API) that the UI follows.  Who may: whoever may
change the node (cluster owners, global administrators), as the one permission engine says."""

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from clusters import tasks
from clusters.api import serializers as s
from clusters.api.workload_actions import _remember, _run
from clusters.kube import nodes as kube
from portal import operations
from portal.api.portal_serializers import OperationSerializer
from portal.audit import record
from portal.models import Operation, OperationStatus
from portal.permissions import CHANGE


def drain_target(node):
    return f"node {node.name}"


def drain_under_way(node):
    """The node's drain that has not finished yet, if any."""
    return (Operation.objects.filter(kind="drain", cluster=node.cluster_id, target_repr=drain_target(node),
                                     status__in=[OperationStatus.PENDING, OperationStatus.RUNNING]).first())


class NodeActionsMixin:
    object_actions = {"cordon": CHANGE, "uncordon": CHANGE, "drain": CHANGE}

    def _set_schedulable(self, request, unschedulable):
        node = self.get_object()  # 404 if unseen, 403 without the change right
        obj = _run(node.cluster, lambda api: kube.cordon(api, node.name, unschedulable))
        before = node.unschedulable
        node = _remember(node.cluster, "nodes", obj) or node
        word = "cordoned" if unschedulable else "uncordoned"
        record("action", node, before={"unschedulable": before}, after={"unschedulable": unschedulable}, message=word)
        return Response(s.NodeSerializer(node).data)

    @extend_schema(request=None, responses=s.NodeSerializer)
    @action(detail=True, methods=["post"])
    def cordon(self, request, pk=None):
        """Mark the node unschedulable (`kubectl cordon`): its pods stay, no new ones come."""
        return self._set_schedulable(request, True)

    @extend_schema(request=None, responses=s.NodeSerializer)
    @action(detail=True, methods=["post"])
    def uncordon(self, request, pk=None):
        """Mark the node schedulable again (`kubectl uncordon`)."""
        return self._set_schedulable(request, False)

    @extend_schema(request=s.DrainSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"])
    def drain(self, request, pk=None):
        """Cordon the node and evict its pods, honouring PodDisruptionBudgets (`kubectl drain
        --ignore-daemonsets`): an operation to follow; it fails naming what blocked it."""
        node = self.get_object()
        data = s.DrainSerializer(data=request.data)  # an empty body takes the defaults
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if node.cluster.is_swarm:
            raise exceptions.ValidationError({"cluster": [node.cluster.kubernetes_only("a drain")]})
        if node.cluster.state not in ("active", "updating"):
            raise exceptions.ValidationError({"cluster": [f"the cluster is {node.cluster.state}; a drain needs an active cluster"]})
        options = {"timeout": v["timeout_seconds"], "force": v["force"], "delete_emptydir_data": v["delete_emptydir_data"]}
        with transaction.atomic():
            # One drain of a node at a time: the node row is the lock.
            type(node).objects.select_for_update().filter(pk=node.pk).first()
            running = drain_under_way(node)
            if running is not None:
                raise exceptions.ValidationError({"detail": f"node {node.name} is already being drained (operation {running.pk})"})
            op = operations.start("drain", tasks.drain_node, cluster=node.cluster, target=drain_target(node),
                                  user=request.user, args=(node.pk, options))
            record("action", node, after=options, message=f"drain started (operation {op.pk})")
        return Response(OperationSerializer(op).data, status=status.HTTP_202_ACCEPTED)
