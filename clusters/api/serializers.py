import re

from django.urls import NoReverseMatch, reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clusters import container_spec
from clusters.drivers import sandbox_nodes_error
from clusters.models import (
    Cluster,
    ClusterDriver,
    ClusterEvent,
    ClusterKind,
    ClusterMembership,
    Namespace,
    Node,
    Pod,
    Service,
    SwarmObject,
    Workload,
    name_taken_error,
)
from portal.api.portal_serializers import SubjectMixin
from portal.api.serializers import BriefSerializer, ModelSerializer, StrictSerializer
from portal.permissions import CHANGE
from portal.validators import MAX_ID, validate_dns1123_label


class BriefClusterSerializer(BriefSerializer):
    class Meta:
        model = Cluster
        fields = ["id", "name", "slug", "state", "display"]


class SyncWarningSerializer(serializers.Serializer):
    resource = serializers.CharField()
    namespace = serializers.CharField(allow_blank=True)
    name = serializers.CharField(allow_blank=True)
    uid = serializers.CharField(allow_blank=True)
    error = serializers.CharField()


class MissingAPISerializer(serializers.Serializer):
    group_version = serializers.CharField()
    resources = serializers.ListField(child=serializers.CharField(), help_text="What Corral reads from it and could not")
    served = serializers.BooleanField(allow_null=True, help_text="false: the server does not serve it; null: its discovery failed")
    reason = serializers.CharField(allow_blank=True, help_text="Why (cluster owners only)")


class ClusterSerializer(ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    api_endpoint = serializers.CharField(read_only=True)  # empty until provisioned: not always a URL
    has_credentials = serializers.BooleanField(read_only=True)
    summary = serializers.SerializerMethodField()
    sync_warnings = serializers.SerializerMethodField(help_text="Objects the last syncs could not store (cluster owners only)")
    missing_apis = serializers.SerializerMethodField(help_text="APIs the last sync found not served or failing discovery (not synced)")

    class Meta:
        model = Cluster
        fields = [
            "id", "name", "slug", "description", "labels", "kind", "driver", "provider", "driver_config",
            "state", "state_since", "kubernetes_version", "api_endpoint", "last_seen", "last_error", "last_synced",
            "sync_warnings", "missing_apis", "is_management", "has_credentials", "summary", "created", "modified", "created_by",
        ]
        read_only_fields = [
            "kind", "state", "state_since", "kubernetes_version", "api_endpoint", "last_seen", "last_error",
            "last_synced", "created", "modified",
        ]

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField(), allow_null=True))
    def get_summary(self, obj):
        if not hasattr(obj, "nodes_total"):
            return None
        return {
            "nodes_ready": obj.nodes_ready, "nodes_total": obj.nodes_total, "pods": obj.pods_total,
            "cpu_allocatable_m": obj.cpu_allocatable_m, "cpu_requested_m": obj.cpu_requested_m,
            "memory_allocatable_bytes": obj.memory_allocatable_bytes, "memory_requested_bytes": obj.memory_requested_bytes,
        }

    @extend_schema_field(SyncWarningSerializer(many=True))
    def get_sync_warnings(self, obj):
        if not obj.sync_warnings:
            return []
        return obj.sync_warnings if obj.pk in self._changeable() else []

    def _changeable(self):
        request = self.context.get("request")
        if "changeable_clusters" not in self.context:  # once per response, not once per cluster
            self.context["changeable_clusters"] = set(Cluster.objects.restrict(request.user, CHANGE).values_list("pk", flat=True)) if request else set()
        return self.context["changeable_clusters"]

    @extend_schema_field(MissingAPISerializer(many=True))
    def get_missing_apis(self, obj):
        if not obj.missing_apis:
            return []
        return obj.missing_apis_for(None, changeable=obj.pk in self._changeable())

    def validate_name(self, value):
        request = self.context.get("request")
        problem = name_taken_error(value, getattr(request, "user", None), getattr(self.instance, "pk", None))
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate_driver(self, value):
        if self.instance is not None and value != self.instance.driver:
            raise serializers.ValidationError("the driver of an existing cluster cannot change")
        return value

    def validate_driver_config(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object")
        return value

    def validate_is_management(self, value):
        from clusters.capi.classes import management_problem

        if not value or (self.instance is not None and self.instance.is_management):
            return value
        if self.instance is None:
            raise serializers.ValidationError("a cluster is marked as a management cluster once Corral manages it (PATCH)")
        if self.instance.state not in ("active", "updating"):
            raise serializers.ValidationError(f"a {self.instance.state} cluster cannot be checked for Cluster API")
        problem = management_problem(self.instance)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate(self, attrs):
        attrs = super().validate(attrs)
        driver = attrs.get("driver", getattr(self.instance, "driver", ClusterDriver.IMPORTED))
        if self.instance is None and driver == ClusterDriver.IMPORTED:
            raise serializers.ValidationError(
                {"driver": ["to add an existing cluster, import it (POST /api/v1/clusters/import/ with its kubeconfig)"]}
            )
        if driver == ClusterDriver.SANDBOX and "driver_config" in attrs:
            problem = sandbox_nodes_error(attrs["driver_config"])
            if problem:
                raise serializers.ValidationError({"driver_config": [problem]})
        if driver == ClusterDriver.CAPI:
            if self.instance is not None:
                if "driver_config" in attrs and attrs["driver_config"] != self.instance.driver_config:
                    raise serializers.ValidationError({"driver_config": ["scale pools with /scale/ and upgrade with /upgrade/"]})
            else:
                from clusters.capi.classes import check_request

                request = self.context.get("request")
                attrs["driver_config"], errors = check_request(attrs.get("driver_config"), getattr(request, "user", None))
                if errors:
                    raise serializers.ValidationError({"driver_config": {k: [v] for k, v in errors.items()}})
        return attrs


class PoolScaleSerializer(StrictSerializer):
    pool = serializers.CharField(max_length=63, help_text="A worker pool's name (workers[].name)")
    replicas = serializers.IntegerField(min_value=0, max_value=1000)


class UpgradeSerializer(StrictSerializer):
    version = serializers.RegexField(r"^v\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$", max_length=64,
                                     error_messages={"invalid": "a Kubernetes version such as v1.35.0"})


class ClusterClassVariableSerializer(serializers.Serializer):
    name = serializers.CharField()
    required = serializers.BooleanField()
    type = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    default = serializers.JSONField(allow_null=True)
    schema = serializers.JSONField(help_text="The variable's OpenAPI v3 schema")


class ClusterClassSerializer(serializers.Serializer):
    name = serializers.CharField()
    namespace = serializers.CharField()
    kubernetes_versions = serializers.ListField(child=serializers.CharField())
    worker_classes = serializers.ListField(child=serializers.CharField())
    variables = ClusterClassVariableSerializer(many=True)
    conditions = serializers.JSONField()


class ClusterMembershipSerializer(SubjectMixin, ModelSerializer):
    scope_field = "cluster"

    class Meta:
        model = ClusterMembership
        fields = ["id", "cluster", "role", "user", "group", "created"]
        read_only_fields = ["created"]


class InventorySerializer(serializers.ModelSerializer):
    cluster = BriefClusterSerializer(read_only=True)


class NodeSerializer(InventorySerializer):
    class Meta:
        model = Node
        fields = [
            "id", "cluster", "uid", "name", "labels", "roles", "kubelet_version", "os_image", "internal_ip",
            "capacity", "allocatable", "conditions", "taints", "ready", "unschedulable", "details", "created_in_cluster", "synced",
        ]


class NamespaceSerializer(InventorySerializer):
    project_name = serializers.CharField(source="project.name", read_only=True, default=None, allow_null=True)

    class Meta:
        model = Namespace
        fields = ["id", "cluster", "uid", "name", "labels", "phase", "project", "project_name", "resource_quota", "created_in_cluster", "synced"]


class NamespacedSerializer(InventorySerializer):
    namespace = serializers.CharField(source="namespace.name", read_only=True)


class WorkloadSerializer(NamespacedSerializer):
    class Meta:
        model = Workload
        fields = [
            "id", "cluster", "namespace", "uid", "kind", "name", "labels", "desired_replicas", "ready_replicas",
            "available_replicas", "images", "selector", "paused", "details", "created_in_cluster", "synced",
        ]


class PodSerializer(NamespacedSerializer):
    class Meta:
        model = Pod
        fields = [
            "id", "cluster", "namespace", "uid", "name", "labels", "node_name", "workload", "owner_kind", "owner_name",
            "phase", "ready", "restarts", "waiting_reason", "images", "pod_ip", "cpu_request_m", "memory_request_bytes", "started",
            "details", "created_in_cluster", "synced",
        ]


class ServiceSerializer(NamespacedSerializer):
    class Meta:
        model = Service
        fields = ["id", "cluster", "namespace", "uid", "name", "labels", "type", "cluster_ip", "ports", "selector", "synced"]


class SwarmObjectSerializer(InventorySerializer):
    """A Swarm network, secret or config: metadata only (Corral never reads their data)."""

    namespace = serializers.CharField(source="namespace.name", read_only=True, default=None, allow_null=True)

    class Meta:
        model = SwarmObject
        fields = ["id", "cluster", "namespace", "uid", "kind", "name", "labels", "details", "created_in_cluster", "synced"]


class ClusterEventSerializer(InventorySerializer):
    namespace = serializers.CharField(source="namespace.name", read_only=True, default=None, allow_null=True)

    class Meta:
        model = ClusterEvent
        fields = [
            "id", "cluster", "namespace", "type", "reason", "message", "involved_kind", "involved_name",
            "count", "first_seen", "last_seen",
        ]


class ClusterImportSerializer(StrictSerializer):
    """Kubernetes: either a kubeconfig (and optionally which context), or server + CA + bearer token.
    Swarm (``kind: swarm``): a manager's Docker endpoint, with TLS client certificates for tcp://,
    a private key and the host's key for ssh://."""

    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    labels = serializers.DictField(child=serializers.CharField(max_length=63), required=False, default=dict)
    provider = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    kubeconfig = serializers.CharField(required=False, trim_whitespace=False)
    context = serializers.CharField(required=False)
    server = serializers.CharField(required=False)
    ca_data = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    token = serializers.CharField(required=False, trim_whitespace=True)
    kind = serializers.ChoiceField(choices=ClusterKind.choices, default=ClusterKind.KUBERNETES)
    endpoint = serializers.CharField(required=False, max_length=300, help_text="Swarm: unix:///path, tcp://host:port or ssh://user@host")
    tls_ca = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, help_text="Swarm tcp://: the CA (PEM)")
    tls_cert = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, help_text="Swarm tcp://: client certificate (PEM)")
    tls_key = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, help_text="Swarm tcp://: client key (PEM)")
    ssh_key = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False,
                                    help_text="Swarm ssh://: the private key to log in with (OpenSSH or PEM, no passphrase)")
    ssh_host_key = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False,
                                         help_text="Swarm ssh://: the host's key: known_hosts line(s), public key or SHA256: fingerprint")

    def __init__(self, *args, require_name=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = require_name

    def validate_name(self, value):
        problem = name_taken_error(value, getattr(self.context.get("request"), "user", None))
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate(self, attrs):
        swarm_fields = [k for k in ("endpoint", "tls_ca", "tls_cert", "tls_key", "ssh_key", "ssh_host_key") if k in attrs]
        kube_fields = [k for k in ("kubeconfig", "context", "server", "token", "ca_data") if k in attrs]
        if attrs.get("kind") == ClusterKind.SWARM:
            if kube_fields:
                raise serializers.ValidationError({kube_fields[0]: ["not for a Swarm: give endpoint (and tls_ca, tls_cert, tls_key for tcp://, "
                                                                     "ssh_key and ssh_host_key for ssh://)"]})
            if not attrs.get("endpoint"):
                raise serializers.ValidationError({"endpoint": ["required for a Swarm: unix:///path, tcp://host:port or ssh://user@host"]})
            return attrs
        if swarm_fields:
            raise serializers.ValidationError({swarm_fields[0]: ['only for a Swarm ("kind": "swarm")']})
        by_kubeconfig = "kubeconfig" in attrs
        by_token = any(k in attrs for k in ("server", "token", "ca_data"))
        if by_kubeconfig == by_token:
            raise serializers.ValidationError(
                {"kubeconfig": ["give either a kubeconfig, or server, ca_data and token"]}
            )
        if by_token:
            missing = [k for k in ("server", "token") if not attrs.get(k)]
            if missing:
                raise serializers.ValidationError({k: ["required with server/token import"] for k in missing})
        elif "context" in attrs and not attrs["context"]:
            raise serializers.ValidationError({"context": ["must not be empty"]})
        return attrs


class WorkloadCreateSerializer(StrictSerializer):
    """``kubectl create deployment NAME --image=IMAGE --replicas=N`` through Corral."""

    cluster = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    namespace = serializers.CharField(max_length=63)
    name = serializers.CharField(max_length=63, validators=[validate_dns1123_label])
    image = serializers.RegexField(r"^[^\s]+$", max_length=500, error_messages={"invalid": "an image reference has no spaces, e.g. nginx:1.27"})
    replicas = serializers.IntegerField(min_value=0, max_value=1000, default=1)
    port = serializers.IntegerField(min_value=1, max_value=65535, required=False, help_text="One container port (or use ports)")
    ports = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=65535), max_length=20, required=False,
                                  help_text="The container's ports: [80, 443]")
    env = serializers.JSONField(required=False, help_text='Environment variables: [{"name": "MODE", "value": "prod"}]')
    resources = serializers.JSONField(required=False, help_text=(
        'CPU and memory: {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}; '
        "what is not given comes from the namespace's project container defaults"))

    def validate_ports(self, value):
        repeated = sorted({p for p in value if value.count(p) > 1})
        if repeated:
            raise serializers.ValidationError(f"port {repeated[0]} is given twice")
        return value

    def validate_env(self, value):
        return container_spec.validate_env(value)

    def validate_resources(self, value):
        return container_spec.validate_resources(value)

    def validate(self, attrs):
        if "port" in attrs and "ports" in attrs:
            raise serializers.ValidationError({"port": ["give port or ports, not both"]})
        if "port" in attrs:
            attrs["ports"] = [attrs.pop("port")]
        return attrs


class ScaleSerializer(StrictSerializer):
    replicas = serializers.IntegerField(min_value=0, max_value=1000)


DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class ExposedServiceSerializer(ServiceSerializer):
    """The Service that expose made, with its page in the portal."""

    page = serializers.SerializerMethodField(help_text="The Service's page in the portal")
    summary = serializers.SerializerMethodField(help_text='In words: "Service nginx (ClusterIP 10.96.0.12:80)"')

    class Meta(ServiceSerializer.Meta):
        fields = [*ServiceSerializer.Meta.fields, "page", "summary"]

    def get_page(self, obj) -> str:
        try:
            return reverse("portal-service", args=[obj.pk])
        except NoReverseMatch:  # the Service page's route, where this branch does not have it yet
            return f"/services/{obj.pk}/"

    def get_summary(self, obj) -> str:
        return service_summary(obj.name, obj.type, obj.cluster_ip, obj.ports)


def service_summary(name, service_type, cluster_ip, ports):
    address = cluster_ip if cluster_ip and cluster_ip != "None" else "headless"
    shown = ", ".join(f"{address}:{p.get('port')}" + (f" (node port {p['nodePort']})" if p.get("nodePort") else "") for p in ports or [])
    return f"Service {name} ({service_type} {shown or address})"


class ExposeSerializer(StrictSerializer):
    name = serializers.CharField(max_length=63, required=False, help_text="The Service's name (default: the workload's)")
    port = serializers.IntegerField(min_value=1, max_value=65535)
    target_port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
    type = serializers.ChoiceField(choices=["ClusterIP", "NodePort", "LoadBalancer"], default="ClusterIP")


class DrainSerializer(StrictSerializer):
    timeout_seconds = serializers.IntegerField(min_value=10, max_value=3600, default=120,
                                               help_text="Give up (and say what blocked it) after this long")
    force = serializers.BooleanField(default=False, help_text="Also evict pods that no controller would recreate")
    delete_emptydir_data = serializers.BooleanField(default=False, help_text="Also evict pods with emptyDir data (it is lost)")


class EndpointPortSerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)
    port = serializers.IntegerField(allow_null=True)
    protocol = serializers.CharField()


class EndpointSerializer(serializers.Serializer):
    address = serializers.CharField()
    address_type = serializers.CharField(allow_blank=True)
    ready = serializers.BooleanField()
    serving = serializers.BooleanField()
    terminating = serializers.BooleanField()
    pod = serializers.CharField(allow_blank=True, help_text="The pod behind the address (its targetRef), if any")
    pod_id = serializers.IntegerField(allow_null=True, help_text="The pod's id in Corral, when you may see it")
    node = serializers.CharField(allow_blank=True)
    node_id = serializers.IntegerField(allow_null=True, help_text="The node's id in Corral, when you may see it")
    ports = EndpointPortSerializer(many=True)
