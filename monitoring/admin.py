from django.contrib import admin

from monitoring.models import Alert, AlertRule, Notifier
from portal.admin_base import ChangeLoggedAdmin, ReadOnlyAdmin


@admin.register(Notifier)
class NotifierAdmin(ChangeLoggedAdmin):
    list_display = ("name", "kind", "enabled", "created")
    list_filter = ("kind", "enabled")
    search_fields = ("name",)


@admin.register(AlertRule)
class AlertRuleAdmin(ChangeLoggedAdmin):
    list_display = ("name", "cluster", "condition", "threshold", "for_seconds", "severity", "enabled")
    list_filter = ("condition", "severity", "enabled", "cluster")
    list_select_related = ("cluster",)
    search_fields = ("name",)
    filter_horizontal = ("notifiers",)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("rule", "cluster", "target", "state", "started", "resolved", "last_notified")
    list_filter = ("state", "cluster", "rule")
    list_select_related = ("rule", "cluster")
    search_fields = ("target", "message")
    date_hierarchy = "started"
