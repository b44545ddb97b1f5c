"""The user admin: where each account comes from, its groups and last login, and who deactivated
it (unticking "active" here is an administrator's deactivation, which the directory cannot lift).
The admin's login is the portal's login page (one form, one throttle)."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group
from django.db.models import Prefetch

from portal.accounts.models import AccountSource, Profile
from portal.accounts.views import admin_login

admin.site.login = admin_login

User = get_user_model()


class SourceFilter(admin.SimpleListFilter):
    title = "source"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return AccountSource.choices

    def queryset(self, request, queryset):
        if self.value() == AccountSource.DIRECTORY:
            return queryset.filter(profile__source=AccountSource.DIRECTORY)
        if self.value() == AccountSource.LOCAL:
            return queryset.exclude(profile__source=AccountSource.DIRECTORY)
        return queryset


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    extra = 0
    max_num = 1
    readonly_fields = ("source", "directory_dn", "directory_refreshed", "deactivated_by", "deactivated_reason")

    def has_add_permission(self, request, obj=None):
        return False


if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class CorralUserAdmin(UserAdmin):
    list_display = ("username", "email", "get_full_name", "source", "group_list", "last_login", "is_active", "is_staff", "is_superuser")
    list_filter = (SourceFilter, "is_active", ("profile__deactivated_by", admin.ChoicesFieldListFilter), "is_staff", "is_superuser", "groups")
    list_select_related = ("profile",)
    inlines = (ProfileInline,)
    readonly_fields = ("last_login", "date_joined")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related(Prefetch("groups", queryset=Group.objects.order_by("name")))

    @admin.display(description="source", ordering="profile__source")
    def source(self, obj):
        profile = getattr(obj, "profile", None)
        return profile.get_source_display() if profile else AccountSource.LOCAL.label

    @admin.display(description="groups")
    def group_list(self, obj):
        names = [g.name for g in obj.groups.all()]
        shown = ", ".join(names[:5])
        return f"{shown} (+{len(names) - 5} more)" if len(names) > 5 else shown

    @admin.display(description="full name")
    def get_full_name(self, obj):
        return obj.get_full_name()
