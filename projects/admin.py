from django.contrib import admin

from portal.admin_base import ChangeLoggedAdmin
from projects.models import Project, ProjectMembership


class ProjectMembershipInline(admin.TabularInline):
    model = ProjectMembership
    extra = 0
    autocomplete_fields = ("user", "group")
    fields = ("role", "user", "group")


@admin.register(Project)
class ProjectAdmin(ChangeLoggedAdmin):
    list_display = ("name", "cluster", "is_system", "sync_state", "last_reconciled")
    list_filter = ("cluster", "sync_state", "is_system")
    list_select_related = ("cluster",)
    search_fields = ("name", "description", "cluster__name")
    readonly_fields = ("is_system", "sync_state", "sync_error", "last_reconciled", "created", "modified", "created_by")
    inlines = [ProjectMembershipInline]


@admin.register(ProjectMembership)
class ProjectMembershipAdmin(ChangeLoggedAdmin):
    list_display = ("project", "role", "user", "group", "created")
    list_filter = ("role", "project__cluster")
    list_select_related = ("project", "project__cluster", "user", "group")
    search_fields = ("project__name", "user__username", "group__name")
    autocomplete_fields = ("user", "group")
