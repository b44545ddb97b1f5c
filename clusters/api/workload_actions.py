"""Deploy, scale, expose and delete through the API: Corral checks the permission with the one
mechanism, makes the change in the cluster, and records it in its inventory at once (the watcher
and the resync confirm it)."""

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from clusters import container_spec
from clusters.api import serializers as s
from clusters.api import swarm_actions as swarm
from clusters.api.errors import require_usable, workload_errors
from clusters.kube import workloads as kube
from clusters.kube.client import ClusterConnectionError, api_client
from clusters.kube.inventory import MODELS, apply_change, service_fields
from clusters.models import Namespace, Workload
from portal.audit import record
from portal.permissions import CHANGE, VIEW, can_add


def _client(cluster):
    if cluster.is_swarm:
        raise exceptions.ValidationError({"cluster": [cluster.kubernetes_only("this change")]})
    require_usable(cluster)
    try:
        return api_client(cluster.credentials)
    except ClusterConnectionError as exc:
        raise exceptions.ValidationError({"cluster": [str(exc)]}) from None


def _run(cluster, change):
    """Run ``change(api)`` against the cluster, turning its failures into API errors."""
    api = _client(cluster)
    try:
        with workload_errors():
            return change(api)
    finally:
        api.close()


def _remember(cluster, resource, obj):
    """Store what the cluster answered; the stored row (the watcher's, when it was first)."""
    with transaction.atomic():
        instance, _ = apply_change(cluster, resource, "MODIFIED", obj)
    uid = (obj.get("metadata") or {}).get("uid")
    if instance is None and uid:  # a newer version is stored already
        instance = MODELS[resource].objects.filter(cluster=cluster, uid=uid).first()
    return instance


class WorkloadActionsMixin:
    object_actions = {"scale": CHANGE, "expose": CHANGE, "image": CHANGE}

    @extend_schema(request=s.WorkloadCreateSerializer, responses={201: s.WorkloadSerializer})
    def create(self, request):
        """Deploy an image as a Deployment in a namespace Corral knows; on a Swarm cluster, as a
        service in a stack (see SwarmServiceCreateSerializer)."""
        cluster = swarm.swarm_cluster(request)
        if cluster is not None:
            return swarm.create_service(request, cluster)
        data = s.WorkloadCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        namespace = (Namespace.objects.restrict(request.user, VIEW).select_related("cluster", "project")
                     .filter(cluster_id=v["cluster"], name=v["namespace"]).first())
        if namespace is None:
            raise exceptions.ValidationError({"namespace": [f"no namespace {v['namespace']!r} you may see in cluster {v['cluster']}"]})
        if not can_add(request.user, Workload, cluster=namespace.cluster, project=namespace.project):
            raise exceptions.PermissionDenied(f"you may not deploy to namespace {namespace.name}")
        if getattr(request.auth, "read_only", False):
            raise exceptions.PermissionDenied("read-only token: this request would change something")
        resources = container_spec.with_defaults(v.get("resources") or {}, namespace.project)
        ports, env = v.get("ports") or [], v.get("env") or []
        obj = _run(namespace.cluster, lambda api: kube.deploy(api, namespace.name, v["name"], v["image"], v["replicas"], ports, env, resources))
        workload = _remember(namespace.cluster, "deployments", obj)
        record("create", workload, after={"image": v["image"], "replicas": v["replicas"], "namespace": namespace.name, "ports": ports,
                                          "env": [e["name"] for e in env], "resources": resources})
        body = s.WorkloadSerializer(workload).data
        body["container"] = {"ports": ports, "env": env, "resources": resources}  # as deployed, the project's defaults filled in
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ScaleSerializer, responses=s.WorkloadSerializer)
    @action(detail=True, methods=["post"])
    def scale(self, request, pk=None):
        workload = self.get_object()
        data = s.ScaleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        replicas = data.validated_data["replicas"]
        if workload.kind == Workload.Kind.SERVICE:
            return swarm.scale_service(workload, replicas)
        obj = _run(workload.cluster, lambda api: kube.scale(api, workload.kind, workload.namespace.name, workload.name, replicas))
        before = workload.desired_replicas
        workload = _remember(workload.cluster, f"{workload.kind}s", obj)
        record("action", workload, before={"replicas": before}, after={"replicas": replicas}, message=f"scaled to {replicas}")
        return Response(s.WorkloadSerializer(workload).data)

    @extend_schema(request=s.ExposeSerializer, responses={201: s.ExposedServiceSerializer})
    @action(detail=True, methods=["post"])
    def expose(self, request, pk=None):
        """Create a Service for the workload's pods (`kubectl expose`); the answer names it (type,
        cluster IP, ports) with its id in Corral and its page."""
        workload = self.get_object()
        if workload.kind == Workload.Kind.SERVICE:
            raise exceptions.ValidationError({"detail": "a Swarm service publishes its ports itself: give ports when deploying it"})
        data = s.ExposeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        name, namespace = v.get("name") or workload.name, workload.namespace.name
        if len(name) > 63 or not s.DNS1035_LABEL.match(name):
            raise exceptions.ValidationError({"name": [
                f"a Service needs a name of at most 63 lower-case letters, digits and '-', starting with a letter ({name!r} is not); give one"]})

        def create(api):
            try:
                return kube.expose(api, namespace, workload.name, workload.selector, v["port"], v.get("target_port"), v["type"], name=name)
            except kube.WorkloadError as exc:
                if exc.cluster_status == 409:
                    raise exceptions.ValidationError({"name": [
                        f"a Service named {name} already exists in namespace {namespace}; nothing was changed (give another name)"]}) from None
                raise

        obj = _run(workload.cluster, create)
        service = _remember(workload.cluster, "services", obj)
        if service is not None:
            record("create", service, after={"port": v["port"], "type": v["type"], "workload": workload.name})
            body = s.ExposedServiceSerializer(service).data
        else:  # not storable in the inventory (see the cluster's sync warnings): say what was made
            record("create", object_type="clusters.service", object_repr=f"{workload.cluster}/{namespace}/{name}",
                   after={"port": v["port"], "type": v["type"], "workload": workload.name})
            fields = service_fields(obj)
            body = {"id": None, "page": None, "namespace": namespace,
                    "summary": s.service_summary(fields["name"], fields["type"], fields["cluster_ip"], fields["ports"]),
                    **{k: fields[k] for k in ("uid", "name", "type", "cluster_ip", "ports", "selector")}}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=swarm.ImageSerializer, responses=s.WorkloadSerializer)
    @action(detail=True, methods=["post"])
    def image(self, request, pk=None):
        """Roll the workload onto another image (a Swarm service follows its update config, a
        Deployment its rolling update strategy)."""
        workload = self.get_object()
        data = swarm.ImageSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        image = data.validated_data["image"]
        if workload.kind == Workload.Kind.SERVICE:
            return swarm.update_image(workload, image)
        obj = _run(workload.cluster, lambda api: kube.set_image(api, workload.kind, workload.namespace.name, workload.name, image))
        before = list(workload.images)
        workload = _remember(workload.cluster, f"{workload.kind}s", obj)
        record("action", workload, before={"images": before}, after={"images": [image]}, message=f"image set to {image}")
        return Response(s.WorkloadSerializer(workload).data)

    def destroy(self, request, pk=None):
        workload = self.get_object()  # 404 if unseen, 403 without the delete right
        if workload.kind == Workload.Kind.SERVICE:
            return swarm.remove_service(workload)
        _run(workload.cluster, lambda api: kube.delete(api, workload.kind, workload.namespace.name, workload.name))
        record("delete", workload, before={"kind": workload.kind, "namespace": workload.namespace.name})
        workload.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class PodActionsMixin:
    def destroy(self, request, pk=None):
        """Delete a pod in the cluster (its controller, if any, makes a new one)."""
        pod = self.get_object()  # 404 if unseen, 403 without the delete right
        _run(pod.cluster, lambda api: kube.delete(api, "pods", pod.namespace.name, pod.name))
        record("delete", pod, before={"namespace": pod.namespace.name, "node": pod.node_name})
        pod.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


