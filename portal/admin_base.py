"""Admin bases: the changelist, the object pages and the buttons all ask ``restrict``."""

from django.contrib import admin

from portal.permissions import ADD, CHANGE, DELETE, VIEW, can, is_global_admin, rule_for


class RestrictedAdmin(admin.ModelAdmin):
    list_per_page = 50

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user, VIEW)

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        if not (request.user.is_active and request.user.is_staff):
            return False
        return obj is None or can(request.user, VIEW, obj)

    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_staff and self._may(request, ADD)

    def has_change_permission(self, request, obj=None):
        if not (request.user.is_active and request.user.is_staff):
            return False
        return can(request.user, CHANGE, obj) if obj is not None else self._may(request, CHANGE)

    def has_delete_permission(self, request, obj=None):
        if not (request.user.is_active and request.user.is_staff):
            return False
        return can(request.user, DELETE, obj) if obj is not None else self._may(request, DELETE)

    def _may(self, request, action):
        # On list pages: administrators always; others when the model is scoped to them at all.
        return is_global_admin(request.user) or rule_for(self.model) is not None


class ReadOnlyAdmin(RestrictedAdmin):
    """Inventory and records: written by Corral, read by people."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ChangeLoggedAdmin(RestrictedAdmin):
    readonly_fields = ("created", "modified", "created_by")

    def save_model(self, request, obj, form, change):
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
