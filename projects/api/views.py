from portal.api.viewsets import ModelViewSet
from projects import filters
from projects.api import serializers as s
from projects.models import Project, ProjectMembership


class ProjectViewSet(ModelViewSet):
    queryset = Project.objects.select_related("cluster", "created_by").prefetch_related("namespaces")
    serializer_class = s.ProjectSerializer
    filterset_class = filters.ProjectFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created"]


class ProjectMembershipViewSet(ModelViewSet):
    queryset = ProjectMembership.objects.select_related("project", "user", "group")
    serializer_class = s.ProjectMembershipSerializer
    filterset_class = filters.ProjectMembershipFilter
