import json

from django.contrib import admin, messages
from django.utils.html import format_html

from portal.admin_base import ChangeLoggedAdmin, ReadOnlyAdmin
from portal.models import ApiToken, AuditEvent, GlobalRoleBinding, Operation
from portal.operations import cancel
from portal.states import InvalidTransition


@admin.register(GlobalRoleBinding)
class GlobalRoleBindingAdmin(ChangeLoggedAdmin):
    list_display = ("role", "user", "group", "created")
    list_filter = ("role",)
    search_fields = ("user__username", "group__name")
    autocomplete_fields = ("user", "group")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("time", "username", "source", "action", "object_type", "object_repr", "request_id")
    list_filter = ("action", "source", "object_type")
    search_fields = ("username", "object_repr", "object_id", "message", "request_id")
    date_hierarchy = "time"
    readonly_fields = ("pretty_before", "pretty_after")
    exclude = ("before", "after")

    @admin.display(description="before")
    def pretty_before(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.before, indent=2, sort_keys=True))

    @admin.display(description="after")
    def pretty_after(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.after, indent=2, sort_keys=True))


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "target_repr", "status", "progress", "created_by", "created", "finished")
    list_filter = ("status", "kind")
    search_fields = ("target_repr", "error")
    readonly_fields = ("log_lines",)
    exclude = ("log",)
    actions = ["cancel_operations"]

    @admin.display(description="log")
    def log_lines(self, obj):
        lines = "\n".join(f"{line.get('time', '')}  {line.get('message', '')}" for line in obj.log)
        return format_html("<pre>{}</pre>", lines)

    @admin.action(description="Cancel the selected operations")
    def cancel_operations(self, request, queryset):
        done = 0
        for operation in queryset:
            try:
                cancel(operation, by=request.user)
                done += 1
            except InvalidTransition as exc:
                self.message_user(request, f"operation {operation.pk}: {exc}", messages.WARNING)
        if done:
            self.message_user(request, f"cancelled {done} operation(s)")

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ("key_id", "user", "description", "read_only", "created", "expires", "last_used", "revoked")
    list_filter = ("read_only",)
    search_fields = ("user__username", "key_id", "description")
    exclude = ("key_hash",)
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        from django.utils import timezone

        count = queryset.filter(revoked__isnull=True).update(revoked=timezone.now())
        self.message_user(request, f"revoked {count} token(s)")
