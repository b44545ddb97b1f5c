from django.contrib import admin, messages
from django.utils.html import format_html_join

from portal.admin_base import ChangeLoggedAdmin, RestrictedInline
from projects.models import Project, ProjectMembership
from projects.quotas import lock_projects, summary


class ProjectMembershipInline(RestrictedInline):
    model = ProjectMembership
    autocomplete_fields = ("user", "group")
    fields = ("role", "user", "group")


@admin.register(Project)
class ProjectAdmin(ChangeLoggedAdmin):
    list_display = ("name", "cluster", "is_system", "sync_state", "last_reconciled")
    list_filter = ("cluster", "sync_state", "is_system")
    list_select_related = ("cluster",)
    search_fields = ("name", "description", "cluster__name")
    readonly_fields = (
        "is_system", "quota_summary", "sync_state", "sync_error", "last_reconciled", "created", "modified", "created_by",
    )
    inlines = [ProjectMembershipInline]
    actions = ["reconcile_now"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if change and obj is not None and request.method == "POST":
            # The form's clean() checks the pool against the namespaces.  The admin saves in one
            # transaction: lock the row first (projects/quotas.py) and validate what is there now.
            lock_projects(obj.pk)
            obj.refresh_from_db()
        return super().get_form(request, obj, change=change, **kwargs)

    @admin.display(description="Quota: pool / allocated / left / used")
    def quota_summary(self, obj):
        if obj.pk is None:
            return "–"
        quota = summary(obj)
        rows = [(key, pool, quota["allocated"].get(key, "0"), quota["left"].get(key), quota["used"].get(key, "–"))
                for key, pool in quota["pool"].items()]
        return format_html_join("<br>", "{}: {} / {} / {} / {}", rows) or "no pool"

    @admin.action(description="Reconcile the selected projects' clusters now")
    def reconcile_now(self, request, queryset):
        from projects.tasks import request_reconcile

        clusters = set(queryset.values_list("cluster_id", flat=True))
        for cluster_id in clusters:
            request_reconcile(cluster_id)
        messages.info(request, f"reconcile queued for {len(clusters)} cluster(s)")


@admin.register(ProjectMembership)
class ProjectMembershipAdmin(ChangeLoggedAdmin):
    list_display = ("project", "role", "user", "group", "created")
    list_filter = ("role", "project__cluster")
    list_select_related = ("project", "project__cluster", "user", "group")
    search_fields = ("project__name", "user__username", "group__name")
    autocomplete_fields = ("user", "group")
