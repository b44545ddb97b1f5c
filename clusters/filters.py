import django_filters

from clusters.models import Cluster, ClusterEvent, ClusterMembership, Namespace, Node, Pod, Service, SwarmObject, Workload
from portal.api.filters import IdFilter


class ClusterFilter(django_filters.FilterSet):
    label = django_filters.CharFilter(method="filter_label", help_text="key=value")

    class Meta:
        model = Cluster
        fields = ["state", "kind", "driver", "provider", "slug"]

    def filter_label(self, queryset, name, value):
        key, _, val = value.partition("=")
        return queryset.filter(**{f"labels__{key}": val}) if val else queryset.filter(labels__has_key=key)


class InventoryFilter(django_filters.FilterSet):
    cluster = IdFilter(field_name="cluster_id")
    name = django_filters.CharFilter(lookup_expr="icontains")


class NamespacedFilter(InventoryFilter):
    namespace = django_filters.CharFilter(field_name="namespace__name")
    project = IdFilter(field_name="namespace__project_id")


class ImageFilterMixin(django_filters.FilterSet):
    image = django_filters.CharFilter(method="filter_image", help_text="part of a container image name")

    def filter_image(self, queryset, name, value):
        return queryset.filter(images__icontains=value)


class NodeFilter(InventoryFilter):
    class Meta:
        model = Node
        fields = ["cluster", "ready", "unschedulable", "kubelet_version"]


class NamespaceFilter(InventoryFilter):
    class Meta:
        model = Namespace
        fields = ["cluster", "project", "phase"]


class WorkloadFilter(ImageFilterMixin, NamespacedFilter):
    class Meta:
        model = Workload
        fields = ["cluster", "kind", "namespace"]


class PodFilter(ImageFilterMixin, NamespacedFilter):
    node = django_filters.CharFilter(field_name="node_name")
    workload = IdFilter(field_name="workload_id")

    class Meta:
        model = Pod
        fields = ["cluster", "namespace", "phase", "ready"]


class ServiceFilter(NamespacedFilter):
    class Meta:
        model = Service
        fields = ["cluster", "namespace", "type"]


class ClusterEventFilter(InventoryFilter):
    namespace = django_filters.CharFilter(field_name="namespace__name")

    class Meta:
        model = ClusterEvent
        fields = ["cluster", "type", "reason", "involved_kind"]


class SwarmObjectFilter(InventoryFilter):
    namespace = django_filters.CharFilter(field_name="namespace__name", help_text="The stack")

    class Meta:
        model = SwarmObject
        fields = ["cluster", "kind"]


class ClusterMembershipFilter(django_filters.FilterSet):
    user = django_filters.CharFilter(field_name="user__username")
    group = django_filters.CharFilter(field_name="group__name")

    class Meta:
        model = ClusterMembership
        fields = ["cluster", "role"]


