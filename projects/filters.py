import django_filters

from portal.api.filters import IdFilter
from projects.models import Project, ProjectMembership


class ProjectFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Project
        fields = ["cluster", "sync_state", "is_system"]


class ProjectMembershipFilter(django_filters.FilterSet):
    user = django_filters.CharFilter(field_name="user__username")
    group = django_filters.CharFilter(field_name="group__name")
    cluster = IdFilter(field_name="project__cluster_id")

    class Meta:
        model = ProjectMembership
        fields = ["project", "role"]
