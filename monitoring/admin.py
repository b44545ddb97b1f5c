from django.contrib import admin

from monitoring.models import Alert, AlertRule, DeliveryAttempt, Notification, Notifier
from portal.admin_base import ChangeLoggedAdmin, ReadOnlyAdmin


@admin.register(Notifier)
class NotifierAdmin(ChangeLoggedAdmin):
    list_display = ("name", "kind", "cluster", "project", "enabled", "last_sent", "last_error_at", "created")
    list_filter = ("kind", "enabled")
    list_select_related = ("cluster", "project")
    search_fields = ("name",)
    readonly_fields = ("secrets_set", "last_sent", "last_error", "last_error_at", *ChangeLoggedAdmin.readonly_fields)

    @admin.display(description="Secrets set (stored encrypted; type a new value into config to replace one)")
    def secrets_set(self, obj):
        return ", ".join(sorted(obj.secrets or {})) or "—"


@admin.register(AlertRule)
class AlertRuleAdmin(ChangeLoggedAdmin):
    list_display = ("name", "cluster", "project", "condition", "threshold", "for_seconds", "severity", "enabled")
    list_filter = ("condition", "severity", "enabled", "cluster")
    list_select_related = ("cluster", "project")
    search_fields = ("name",)
    filter_horizontal = ("notifiers",)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("rule", "cluster", "target", "state", "severity", "started", "resolved", "acknowledged", "silenced_until")
    list_filter = ("state", "severity", "cluster", "rule")
    list_select_related = ("rule", "cluster")
    search_fields = ("target", "message")
    date_hierarchy = "started"


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ("number", "at", "ok", "response_code", "error", "duration_ms")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("subject", "notifier", "kind", "status", "attempts", "response_code", "created", "sent")
    list_filter = ("status", "kind", "notifier")
    list_select_related = ("notifier",)
    search_fields = ("subject", "error")
    exclude = ("payload",)
    inlines = [DeliveryAttemptInline]
