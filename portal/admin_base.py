"""Admin bases: the changelist, the object pages, the form choices, the autocomplete, the buttons
and every save ask the permission engine.

A staff user who is not an administrator sees only rows ``restrict`` allows, is offered only
clusters, projects, notifiers and people they may see, and a save is checked on its target:
adding needs ``can_add`` there, moving a row needs the right to add it at the new place, and a
role binding needs ``may_grant`` (nobody grants a role they do not hold)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Q

from portal.permissions import (
    ADD,
    CHANGE,
    DELETE,
    VIEW,
    binding_scope,
    can,
    can_add,
    is_global_admin,
    may_grant,
    rule_for,
    scopes,
)


def _is_staff(user):
    return user.is_active and user.is_staff


def _scope_fields(model):
    """The registered scope names that are also fields of ``model`` ("cluster", "project")."""
    names = {f.name for f in model._meta.concrete_fields}
    return [name for name in scopes() if name in names]


def subjects(user, model):
    """Users (or groups) ``user`` may pick in a role binding: those bound where ``user`` may see
    the bindings, themselves and their own groups.  Administrators may pick anyone."""
    if is_global_admin(user):
        return model._default_manager.all()
    field = "user" if model is get_user_model() else "group"
    q = Q(pk=user.pk) if field == "user" else Q(pk__in=user.groups.values("pk"))
    for scope in scopes().values():
        bound = scope.bindings().restrict(user, VIEW).exclude(**{f"{field}__isnull": True})
        q |= Q(pk__in=bound.values(f"{field}_id"))
    return model._default_manager.filter(q)


def choices_for(user, model):
    """The rows of ``model`` a form may offer ``user``; None leaves the field alone."""
    if model is get_user_model() or model is Group:
        return subjects(user, model)
    queryset = model._default_manager.all()
    return queryset.restrict(user, VIEW) if hasattr(queryset, "restrict") else None


def refusal(user, model, instance, data, fixed=None):
    """Why ``user`` may not save ``instance`` (a ``model`` row) with the form's ``data``, or None.
    ``fixed`` gives scope objects an inline's parent decides."""
    if is_global_admin(user):
        return None
    fixed = fixed or {}
    adding = instance.pk is None
    old, new = {}, {}
    for name in _scope_fields(model):
        old[name] = None if adding else getattr(instance, name)
        new[name] = fixed[name] if name in fixed else data.get(name, old[name])
    verbose = model._meta.verbose_name
    where = " / ".join(str(obj) for obj in new.values() if obj is not None) or "everywhere"
    if adding:
        if not can_add(user, model, **new):
            return f"You may not add this {verbose} to {where}."
    else:
        if not can(user, CHANGE, instance):
            return f"You may not change this {verbose}."
        if old != new and not can_add(user, model, **new):
            return f"You may not move this {verbose} to {where}."
    bound = binding_scope(model)
    if bound is not None:
        scope_name, field = bound
        # Any change to a binding (role, place or subject) grants its role anew.
        role = data.get("role", getattr(instance, "role", None))
        if not may_grant(user, role, scope_name, new.get(field)):
            return f"You may not grant the role {role} in {new.get(field)}: nobody grants a role they do not hold there."
    return None


class ScopedChoicesMixin:
    """Related choices (drop-downs, multiple selects, autocomplete validation) are restricted."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            queryset = choices_for(request.user, db_field.remote_field.model)
            if queryset is not None:
                kwargs["queryset"] = queryset
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            queryset = choices_for(request.user, db_field.remote_field.model)
            if queryset is not None:
                kwargs["queryset"] = queryset
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class RestrictedRelatedFilter(admin.RelatedOnlyFieldListFilter):
    """A changelist filter that offers only related objects of rows the user sees, and only those
    they may see themselves (a stranger's cluster never appears in the sidebar)."""

    def field_choices(self, field, request, model_admin):
        queryset = choices_for(request.user, field.related_model)
        pks = model_admin.get_queryset(request).distinct().values_list(f"{self.field_path}__pk", flat=True)
        if queryset is None:
            queryset = field.related_model._default_manager.all()
        ordering = self.field_admin_ordering(field, request, model_admin)
        return [(obj.pk, str(obj)) for obj in queryset.filter(pk__in=pks).order_by(*ordering)]


class RestrictedAdmin(ScopedChoicesMixin, admin.ModelAdmin):
    list_per_page = 50
    # Actions that are not about changing rows: name -> the engine action the rows need.
    action_permissions = {"delete_selected": DELETE}

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user, VIEW)

    def has_module_permission(self, request):
        return _is_staff(request.user)

    def has_view_permission(self, request, obj=None):
        if not _is_staff(request.user):
            return False
        return obj is None or can(request.user, VIEW, obj)

    def has_add_permission(self, request):
        return _is_staff(request.user) and self._may(request, ADD)

    def has_change_permission(self, request, obj=None):
        if not _is_staff(request.user):
            return False
        return can(request.user, CHANGE, obj) if obj is not None else self._may(request, CHANGE)

    def has_delete_permission(self, request, obj=None):
        if not _is_staff(request.user):
            return False
        return can(request.user, DELETE, obj) if obj is not None else self._may(request, DELETE)

    def _may(self, request, action):
        # On list pages: administrators always; others when the model is scoped to them at all.
        return is_global_admin(request.user) or rule_for(self.model) is not None

    def get_list_filter(self, request):
        filters = []
        for item in super().get_list_filter(request):
            path = item if isinstance(item, str) else item[0] if isinstance(item, tuple) else None
            if path is not None and get_fields_from_path(self.model, path)[-1].is_relation:
                item = (path, RestrictedRelatedFilter)
            filters.append(item)
        return filters

    def refuse_save(self, request, instance, data):
        """Why this save is refused (a message for the form), or None.  Subclasses add rules."""
        return refusal(request.user, self.model, instance, data)

    def get_form(self, request, obj=None, change=False, **kwargs):
        return self._checked(request, super().get_form(request, obj, change=change, **kwargs))

    def get_changelist_form(self, request, **kwargs):
        return self._checked(request, super().get_changelist_form(request, **kwargs))

    def _checked(self, request, form):
        """``form``, refusing in its ``clean`` (before the instance takes the new values) what
        ``refuse_save`` refuses."""
        model_admin = self

        class CheckedForm(form):
            def clean(self):
                data = super().clean()
                if not self.errors:
                    problem = model_admin.refuse_save(request, self.instance, data)
                    if problem:
                        raise forms.ValidationError(problem)
                return data

        CheckedForm.__name__ = form.__name__
        return CheckedForm

    def response_action(self, request, queryset):
        # Bulk actions only reach the selected rows the user may change (or delete).
        name = request.POST.get("action", "")
        needed = self.action_permissions.get(name, CHANGE)
        allowed = queryset.restrict(request.user, needed)
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if selected and not request.POST.get("select_across") and allowed.filter(pk__in=selected).count() < len(set(selected)):
            self.message_user(request, f"Skipped the selected rows you may not {needed}.", messages.WARNING)
        return super().response_action(request, allowed)


class RestrictedInline(ScopedChoicesMixin, admin.TabularInline):
    """Rows of a scoped model shown on their parent's page (memberships on a cluster): the parent
    is their scope, and each new, changed or deleted row is checked like a form of its own."""

    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user, VIEW)

    def _may_write(self, request, obj):
        # Rows of the parent ``obj``: whoever may add them there (the parent's field names a scope).
        if not _is_staff(request.user):
            return False
        if is_global_admin(request.user):
            return True
        fk_name = self.fk_name or next(
            f.name for f in self.model._meta.concrete_fields if f.is_relation and f.related_model is self.parent_model
        )
        return obj is not None and can_add(request.user, self.model, **{fk_name: obj})

    def has_view_permission(self, request, obj=None):
        return _is_staff(request.user)

    def has_add_permission(self, request, obj=None):
        return self._may_write(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._may_write(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._may_write(request, obj)

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        user, model, fk_name = request.user, self.model, formset.fk.name

        class CheckedForm(formset.form):
            def clean(self):
                data = super().clean()
                if not self.errors and self.has_changed() and not data.get("DELETE"):
                    parent = self.fields[fk_name].parent_instance
                    problem = refusal(user, model, self.instance, data, fixed={fk_name: parent})
                    if problem:
                        raise forms.ValidationError(problem)
                return data

        class CheckedFormSet(formset):
            form = CheckedForm

            def clean(self):
                super().clean()
                # Rows marked for deletion skip their forms' checks; the engine decides here.
                for form in self.forms:
                    row = form.instance
                    if self._should_delete_form(form) and row.pk is not None and not can(user, DELETE, row):
                        raise forms.ValidationError(f"You may not delete {row}.")

        return CheckedFormSet


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
