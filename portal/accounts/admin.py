"""The user admin: where each account comes from, its groups and last login, and who deactivated
it (unticking "active" here is an administrator's deactivation, which the directory cannot lift).
The admin's login is the portal's login page (one form, one throttle)."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db.models import Prefetch

from portal.accounts.models import AccountSource, Profile
from portal.accounts.views import admin_login
from portal.admin_base import subjects

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


class SubjectAutocompleteMixin:
    """Role-binding forms pick users and groups with the admin's autocomplete.  There, a staff
    user who is not a superuser gets the people ``subjects`` offers them (those they share a scope
    with); the user and group pages themselves stay behind Django's permissions."""

    def _autocomplete(self, request):
        match = getattr(request, "resolver_match", None)
        return match is not None and match.url_name == "autocomplete"

    def has_view_permission(self, request, obj=None):
        if obj is None and self._autocomplete(request) and request.user.is_active and request.user.is_staff:
            return True
        return super().has_view_permission(request, obj)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self._autocomplete(request) and not request.user.is_superuser:
            queryset = queryset.filter(pk__in=subjects(request.user, self.model).values("pk"))
        return queryset


for model in (User, Group):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(Group)
class CorralGroupAdmin(SubjectAutocompleteMixin, GroupAdmin):
    pass


@admin.register(User)
class CorralUserAdmin(SubjectAutocompleteMixin, UserAdmin):
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
