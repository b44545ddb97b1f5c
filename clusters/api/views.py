from django.db import transaction
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from clusters import filters, lifecycle, services, tasks
from clusters.api import serializers as s
from clusters.api.kubeconfig import ClusterKubeconfigMixin
from clusters.api.migration import MigrationMixin
from clusters.api.node_actions import NodeActionsMixin
from clusters.api.swarm_actions import StackActionsMixin
from clusters.api.workload_actions import PodActionsMixin, WorkloadActionsMixin
from clusters.drivers import refuse_new_cluster
from clusters.events import cluster_changed
from clusters.kube import importer
from clusters.models import (
    Cluster,
    ClusterDriver,
    ClusterEvent,
    ClusterKind,
    ClusterMembership,
    ClusterState,
    Namespace,
    Node,
    Pod,
    Service,
    SwarmObject,
    Workload,
)
from clusters.registry import register_imported
from clusters.swarm import importer as swarm_importer
from portal.api.portal_serializers import OperationSerializer
from portal.api.viewsets import ModelViewSet, ReadOnlyModelViewSet
from portal.audit import record
from portal.permissions import CHANGE, VIEW
from projects.api.views import NamespaceChangeMixin


class ClusterViewSet(StackActionsMixin, ClusterKubeconfigMixin, ModelViewSet):
    queryset = Cluster.objects.select_related("created_by")
    serializer_class = s.ClusterSerializer
    filterset_class = filters.ClusterFilter
    search_fields = ["name", "slug", "description", "provider"]
    ordering_fields = ["name", "state", "created", "last_seen"]
    count_limit = 0  # the fleet's size is always counted (a few thousand rows at most)
    # Stacks: the stack's project decides (clusters/api/swarm_actions.py), the cluster is only seen.
    object_actions = {"check": CHANGE, "replace_credentials": CHANGE, "sync": CHANGE, "scale": CHANGE, "upgrade": CHANGE,
                      "stacks": VIEW, "remove_stack": VIEW}

    def get_queryset(self):
        qs = super().get_queryset()
        return qs.with_summary(self.request.user) if self.action in ("list", "retrieve") else qs

    def perform_create(self, serializer):
        problem = refuse_new_cluster(self.request.user, serializer.validated_data.get("driver"))
        if problem:
            raise exceptions.PermissionDenied(problem)
        super().perform_create(serializer)
        self.operation = lifecycle.start_provisioning(serializer.instance, self.request.user)

    def create(self, request, *args, **kwargs):
        # Permission before validation: someone who may not add clusters learns nothing from the
        # body's errors (a capi request's are about a management cluster's ClusterClasses).
        driver = request.data.get("driver") if isinstance(request.data, dict) else None
        problem = refuse_new_cluster(request.user, driver if isinstance(driver, str) else None)
        if problem:
            raise exceptions.PermissionDenied(problem)
        response = super().create(request, *args, **kwargs)
        response.data["operation"] = self.operation.pk
        return response

    def perform_update(self, serializer):
        super().perform_update(serializer)
        cluster_changed(serializer.instance)

    @extend_schema(responses={202: OperationSerializer})
    def destroy(self, request, *args, **kwargs):
        """Removing a cluster is an operation: a sandbox is torn down, an imported cluster forgotten
        (nothing in it is touched)."""
        cluster = self.get_object()
        try:
            op = lifecycle.start_removal(cluster, request.user)
        except lifecycle.Refused as refused:
            raise exceptions.ValidationError({"state": str(refused)}) from None
        return Response(OperationSerializer(op).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.ClusterImportSerializer, responses={201: s.ClusterSerializer})
    @action(detail=False, methods=["post"], url_path="import")
    def import_cluster(self, request):
        """Import a running cluster: Corral connects and checks before anything is stored."""
        if getattr(request.auth, "read_only", False):
            raise exceptions.PermissionDenied("read-only token: this request would change something")
        problem = refuse_new_cluster(request.user, ClusterDriver.IMPORTED)
        if problem:
            raise exceptions.PermissionDenied(problem)
        data = s.ClusterImportSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        credentials, version = _verified_credentials(data.validated_data)
        v = data.validated_data
        cluster = register_imported(
            name=v["name"], credentials=credentials, version=version, user=request.user,
            description=v["description"], labels=v["labels"], provider=v["provider"], kind=v["kind"],
        )
        cluster = self.get_queryset().with_summary(request.user).get(pk=cluster.pk)
        return Response(s.ClusterSerializer(cluster, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ClusterImportSerializer, responses={200: s.ClusterSerializer})
    @action(detail=True, methods=["post"], url_path="credentials")
    def replace_credentials(self, request, pk=None):
        """Give an imported cluster new credentials (checked like an import)."""
        cluster = self.get_object()
        if cluster.driver != "imported":
            raise exceptions.ValidationError({"driver": f"a {cluster.driver} cluster's credentials are managed by Corral"})
        data = s.ClusterImportSerializer(data=request.data, require_name=False, context={"request": request})
        data.is_valid(raise_exception=True)
        if "name" in data.validated_data:
            raise exceptions.ValidationError({"name": ["rename with PATCH, not here"]})
        if data.validated_data["kind"] != cluster.kind and "kind" in request.data:
            raise exceptions.ValidationError({"kind": [f"this cluster is a {cluster.kind} cluster"]})
        data.validated_data["kind"] = cluster.kind
        if cluster.is_swarm and "endpoint" not in data.validated_data:
            raise exceptions.ValidationError({"endpoint": ["required for a Swarm: unix:///path, tcp://host:port or ssh://user@host"]})
        credentials, version = _verified_credentials(data.validated_data)
        with transaction.atomic():
            locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
            locked.credentials = credentials
            locked.api_endpoint = credentials.get("server") or credentials["endpoint"]
            locked.kubernetes_version = version
            locked.last_seen = timezone.now()
            if locked.state in (ClusterState.UNAVAILABLE, ClusterState.ERROR):
                locked.set_state(ClusterState.ACTIVE, error="")
            locked.save()
            record("action", locked, message="credentials replaced")
            cluster_changed(locked)
        return Response(s.ClusterSerializer(self.get_queryset().with_summary(request.user).get(pk=cluster.pk), context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        """Re-read the cluster's whole inventory now (an operation you can follow)."""
        cluster = self.get_object()
        try:
            op = lifecycle.start_sync(cluster, request.user)
        except lifecycle.Refused as refused:
            raise exceptions.ValidationError({"state": str(refused)}) from None
        return Response(OperationSerializer(op).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: s.ClusterClassSerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="cluster-classes")
    def cluster_classes(self, request, pk=None):
        """A management cluster's ClusterClasses, with their versions, worker classes and variables."""
        from clusters.capi.classes import CapiError, list_classes
        from clusters.kube.client import api_client

        cluster = self.get_object()
        if not cluster.is_management:
            raise exceptions.ValidationError({"is_management": "this cluster is not marked as a management cluster"})
        try:
            with api_client(cluster.credentials) as api:
                classes = list_classes(api)
        except CapiError as exc:
            raise exceptions.APIException(exc.message) if exc.status >= 500 else exceptions.ValidationError({"cluster": exc.message})
        except Exception as exc:  # noqa: BLE001 - a cluster that does not answer
            error = exceptions.APIException(f"the management cluster does not answer: {exc}")
            error.status_code = 503
            raise error from None
        return Response(s.ClusterClassSerializer(classes, many=True).data)

    def _capi_change(self, request, cluster, **change):
        try:
            op = lifecycle.start_capi_change(cluster, request.user, **change)
        except lifecycle.Refused as refused:
            raise exceptions.ValidationError({"state": str(refused)}) from None
        return Response(OperationSerializer(op).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.PoolScaleSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"])
    def scale(self, request, pk=None):
        """Scale a worker pool of a cluster made through Cluster API (an operation that follows
        the machines)."""
        cluster = self.get_object()
        data = s.PoolScaleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pools = [p["name"] for p in (cluster.driver_config or {}).get("workers", [])]
        if cluster.driver != "capi":
            raise exceptions.ValidationError({"driver": "only clusters made through Cluster API are scaled by Corral"})
        if data.validated_data["pool"] not in pools:
            raise exceptions.ValidationError({"pool": f"no pool {data.validated_data['pool']!r}; the pools are " + (", ".join(pools) or "none")})
        return self._capi_change(request, cluster, replicas={data.validated_data["pool"]: data.validated_data["replicas"]})

    @extend_schema(request=s.UpgradeSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"])
    def upgrade(self, request, pk=None):
        """Upgrade a cluster made through Cluster API to a version its ClusterClass offers; CAPI
        rolls the machines (followed as an operation)."""
        from clusters.capi.classes import check_request

        cluster = self.get_object()
        data = s.UpgradeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if cluster.driver != "capi":
            raise exceptions.ValidationError({"driver": "only clusters made through Cluster API are upgraded by Corral"})
        version = data.validated_data["version"]
        if version == cluster.driver_config.get("version"):
            raise exceptions.ValidationError({"version": f"the cluster already runs {version}"})
        _, errors = check_request({**cluster.driver_config, "version": version}, request.user)
        if errors:
            raise exceptions.ValidationError({"version" if k == "version" else k: [v] for k, v in errors.items()})
        return self._capi_change(request, cluster, version=version)

    @extend_schema(request=None, responses={202: None})
    @action(detail=True, methods=["post"])
    def check(self, request, pk=None):
        """Check the cluster's health now."""
        cluster = self.get_object()
        if cluster.state not in (ClusterState.ACTIVE, ClusterState.UPDATING, ClusterState.UNAVAILABLE):
            raise exceptions.ValidationError({"state": f"a {cluster.state} cluster cannot be checked"})
        transaction.on_commit(lambda: tasks.check_cluster.delay(cluster.pk))
        return Response({"detail": "health check queued"}, status=status.HTTP_202_ACCEPTED)


class ClusterMembershipViewSet(ModelViewSet):
    queryset = ClusterMembership.objects.select_related("cluster", "user", "group")
    serializer_class = s.ClusterMembershipSerializer
    filterset_class = filters.ClusterMembershipFilter


class NodeViewSet(NodeActionsMixin, ReadOnlyModelViewSet):
    """Inventory of nodes; /cordon/, /uncordon/ and /drain/ for those who may change them."""

    http_method_names = ["get", "post", "head", "options"]
    queryset = Node.objects.select_related("cluster")
    serializer_class = s.NodeSerializer
    filterset_class = filters.NodeFilter
    search_fields = ["name", "internal_ip", "kubelet_version"]
    ordering_fields = ["name", "cluster", "synced"]


class NamespaceViewSet(MigrationMixin, NamespaceChangeMixin, ReadOnlyModelViewSet):
    queryset = Namespace.objects.select_related("cluster", "project")
    serializer_class = s.NamespaceSerializer
    filterset_class = filters.NamespaceFilter
    search_fields = ["name"]


class WorkloadViewSet(MigrationMixin, WorkloadActionsMixin, ReadOnlyModelViewSet):
    """Inventory of workloads; POST deploys an image, /scale/ and /expose/ change one, DELETE removes it."""

    http_method_names = ["get", "post", "delete", "head", "options"]
    queryset = Workload.objects.select_related("cluster", "namespace")
    serializer_class = s.WorkloadSerializer
    filterset_class = filters.WorkloadFilter
    search_fields = ["name", "images"]
    ordering_fields = ["name", "kind", "ready_replicas"]


class PodViewSet(PodActionsMixin, ReadOnlyModelViewSet):
    """Inventory of pods across clusters; DELETE deletes one in its cluster."""

    http_method_names = ["get", "delete", "head", "options"]
    queryset = Pod.objects.select_related("cluster", "namespace")
    serializer_class = s.PodSerializer
    filterset_class = filters.PodFilter
    search_fields = ["name", "images"]  # trigram-indexed; ?node= filters by node
    ordering_fields = ["name", "phase", "restarts", "created_in_cluster"]


class ServiceViewSet(ReadOnlyModelViewSet):
    queryset = Service.objects.select_related("cluster", "namespace")
    serializer_class = s.ServiceSerializer
    filterset_class = filters.ServiceFilter
    search_fields = ["name"]

    @extend_schema(responses={
        200: s.EndpointSerializer(many=True),
        400: OpenApiResponse(OpenApiTypes.OBJECT, description="The cluster cannot be read (not active, no API server address); the answer says why."),
    })
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def endpoints(self, request, pk=None):
        """The Service's endpoints, read now from its EndpointSlices in the cluster: 400 naming why
        when the cluster cannot be read (not active, no API server address), 503 when it did not
        answer or refused."""
        service = self.get_object()
        problem = services.unreadable(service.cluster)
        if problem:
            raise exceptions.ValidationError({"cluster": [problem]})
        found = services.endpoints_for(request.user, service)
        if found.error:
            error = exceptions.APIException(found.error)
            error.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
            raise error
        return Response(s.EndpointSerializer(found.rows, many=True).data)


class SwarmObjectViewSet(ReadOnlyModelViewSet):
    """A Swarm's networks, secrets and configs: names and metadata, never their data."""

    queryset = SwarmObject.objects.select_related("cluster", "namespace")
    serializer_class = s.SwarmObjectSerializer
    filterset_class = filters.SwarmObjectFilter
    search_fields = ["name"]


class ClusterEventViewSet(ReadOnlyModelViewSet):
    queryset = ClusterEvent.objects.select_related("cluster", "namespace")
    serializer_class = s.ClusterEventSerializer
    filterset_class = filters.ClusterEventFilter
    search_fields = ["reason", "message", "involved_name"]


def _verified_credentials(v):
    """Credentials from the validated import body, checked against the cluster (400 on failure)."""
    if v.get("kind") == ClusterKind.SWARM:
        try:
            credentials = swarm_importer.credentials_from(v["endpoint"], v.get("tls_ca"), v.get("tls_cert"), v.get("tls_key"),
                                                         v.get("ssh_key"), v.get("ssh_host_key"))
            found = swarm_importer.verify(credentials)
        except importer.ImportProblem as problem:
            raise exceptions.ValidationError({problem.field: [problem.message]}) from None
        return credentials, found["version"]
    by_kubeconfig = "kubeconfig" in v
    try:
        if by_kubeconfig:
            credentials = importer.credentials_from_kubeconfig(v["kubeconfig"], v.get("context"))
        else:
            credentials = importer.credentials_from_token(v["server"], v.get("ca_data", ""), v["token"])
        version = importer.verify(credentials)
    except importer.ImportProblem as problem:
        field = problem.field
        if by_kubeconfig and field != "context":
            field = "kubeconfig"
        raise exceptions.ValidationError({field: [problem.message]}) from None
    return credentials, version
