from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clusters.models import Cluster
from portal.api.portal_serializers import SubjectMixin
from portal.api.serializers import ModelSerializer, StrictSerializer
from portal.validators import validate_dns1123_label
from projects.models import Project, ProjectMembership
from projects.quantities import validate_quota
from projects.quotas import summary


class ProjectSerializer(ModelSerializer):
    cluster = serializers.PrimaryKeyRelatedField(queryset=Cluster.objects.all())
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    namespaces = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    quota = serializers.SerializerMethodField(help_text="pool, allocated to namespaces, used (as the cluster reports), left")

    class Meta:
        model = Project
        fields = [
            "id", "cluster", "name", "description", "is_system", "resource_quota", "namespace_default_quota",
            "container_default_limits", "namespaces", "quota", "sync_state", "sync_error", "last_reconciled",
            "created", "modified", "created_by",
        ]
        read_only_fields = ["is_system", "sync_state", "sync_error", "last_reconciled", "created", "modified"]

    @extend_schema_field(serializers.DictField(child=serializers.DictField(child=serializers.CharField())))
    def get_quota(self, obj):
        return summary(obj)

    def validate_cluster(self, value):
        if self.instance is not None and value != self.instance.cluster:
            raise serializers.ValidationError("a project cannot move to another cluster")
        return value

    def validate_container_default_limits(self, value):
        from projects.quantities import parse_quantity

        for resource in ("cpu", "memory"):
            request, limit = value.get(f"requests.{resource}"), value.get(f"limits.{resource}")
            try:
                too_big = request is not None and limit is not None and parse_quantity(request) > parse_quantity(limit)
            except ValueError:
                continue  # the field validator names the bad quantity
            if too_big:
                raise serializers.ValidationError(f"requests.{resource} ({request}) must not exceed limits.{resource} ({limit})")
        return value


class ProjectMembershipSerializer(SubjectMixin, ModelSerializer):
    scope_field = "project"

    class Meta:
        model = ProjectMembership
        fields = ["id", "project", "role", "user", "group", "created"]
        read_only_fields = ["created"]


class ProjectMemberSerializer(ProjectMembershipSerializer):
    """``POST /projects/<id>/members/``: the project comes from the URL."""

    class Meta(ProjectMembershipSerializer.Meta):
        read_only_fields = ["created", "project"]

    def validate(self, attrs):
        attrs["project"] = self.context["project"]
        return super().validate(attrs)


class NamespaceCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=63)
    resource_quota = serializers.JSONField(required=False, default=dict, help_text="this namespace's own share of the pool")

    def validate_name(self, value):
        validate_dns1123_label(value)
        return value

    def validate_resource_quota(self, value):
        validate_quota(value)
        return value


class NamespaceChangeSerializer(StrictSerializer):
    """``PATCH /namespaces/<id>/``: move it into or out of a project, or change its own quota."""

    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.all(), allow_null=True, required=False)
    resource_quota = serializers.JSONField(required=False)

    def validate_resource_quota(self, value):
        validate_quota(value)
        return value

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError({"project": ["give project (an id, or null to take it out) or resource_quota"]})
        return attrs
