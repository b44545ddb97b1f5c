from rest_framework import serializers

from clusters.models import Cluster
from portal.api.portal_serializers import SubjectMixin
from portal.api.serializers import ModelSerializer
from projects.models import Project, ProjectMembership


class ProjectSerializer(ModelSerializer):
    cluster = serializers.PrimaryKeyRelatedField(queryset=Cluster.objects.all())
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    namespaces = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = Project
        fields = [
            "id", "cluster", "name", "description", "is_system", "resource_quota", "namespace_default_quota",
            "container_default_limits", "namespaces", "sync_state", "sync_error", "last_reconciled",
            "created", "modified", "created_by",
        ]
        read_only_fields = ["is_system", "sync_state", "sync_error", "last_reconciled", "created", "modified"]

    def validate_cluster(self, value):
        if self.instance is not None and value != self.instance.cluster:
            raise serializers.ValidationError("a project cannot move to another cluster")
        return value


class ProjectMembershipSerializer(SubjectMixin, ModelSerializer):
    scope_field = "project"

    class Meta:
        model = ProjectMembership
        fields = ["id", "project", "role", "user", "group", "created"]
        read_only_fields = ["created"]
