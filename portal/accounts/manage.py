"""Administration in the portal, for global administrators: users, groups and their global roles.
(Cluster members are managed on each cluster's members page, by whoever may grant there.)

Users and groups are registered with no scope in the permission engine, so it lets administrators
only see or change them; these pages ask it (``restriction``), and anyone else gets a 404, as for a
page that does not exist.  Global roles are granted and revoked through the API
(``/api/v1/global-role-bindings/``), the same path and checks as every other client.  Every change
here is written to the audit trail."""

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Prefetch, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal.accounts.models import AccountSource, source_of
from portal.audit import record
from portal.models import GlobalRole, GlobalRoleBinding
from portal.permissions import CHANGE, VIEW, restriction

User = get_user_model()
GLOBAL_ROLES = [GlobalRole.ADMINISTRATOR, GlobalRole.CREATE_CLUSTERS, GlobalRole.USE_SANDBOX]


def _visible(model, user, action=VIEW):
    """``model``'s rows ``user`` may ``action``, as the engine decides (all, or none at all)."""
    q = restriction(model, user, action)
    rows = model.objects.all()
    return rows if q is None else rows.filter(q)


def _administrator(view):
    """Only for those the engine lets see users at all; a 404 for everyone else."""

    @login_required
    def wrapped(request, *args, **kwargs):
        if restriction(User, request.user, VIEW) is not None:
            raise Http404("no such page")
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


class NewUserForm(UserCreationForm):
    """A local account (directory accounts appear by themselves at their first login)."""

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "first_name", "last_name", "email")


class GroupsForm(forms.Form):
    groups = forms.ModelMultipleChoiceField(queryset=Group.objects.order_by("name"), required=False,
                                            widget=forms.SelectMultiple(attrs={"size": 8}))


class NewGroupForm(forms.ModelForm):
    class Meta:
        model = Group
        fields = ("name",)


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)

    def clean_username(self):
        name = self.cleaned_data["username"].strip()
        user = User.objects.filter(username=name).first()
        if user is None:
            raise forms.ValidationError(f"there is no user named “{name}”")
        return user


def _bindings(**subject):
    return {b.role: b for b in GlobalRoleBinding.objects.filter(**subject)}


@_administrator
def users(request):
    """Every account: where it comes from, its groups and global roles; a form for a local one."""
    from portal.views import query_text

    q = query_text(request, "q")
    rows = _visible(User, request.user).select_related("profile").prefetch_related(
        Prefetch("groups", queryset=Group.objects.order_by("name"))).order_by("username")
    if q:
        rows = rows.filter(Q(username__icontains=q) | Q(email__icontains=q) | Q(first_name__icontains=q) | Q(last_name__icontains=q))
    rows = list(rows[:500])
    roles = {}
    for user_id, role in GlobalRoleBinding.objects.filter(user__in=rows).values_list("user_id", "role"):
        roles.setdefault(user_id, []).append(GlobalRole(role).label)
    form = NewUserForm(request.POST or None)
    if request.method == "POST":
        if restriction(User, request.user, CHANGE) is not None:
            raise Http404("no such page")
        if form.is_valid():
            with transaction.atomic():
                user = form.save()
                record("create", user, after={"username": user.username, "email": user.email}, message="local account created in the portal")
            messages.success(request, f"Created the local account {user.username}.")
            return redirect("manage-user", pk=user.pk)
    listed = [{"user": u, "source": source_of(u), "roles": roles.get(u.pk, [])} for u in rows]
    return render(request, "manage/users.html", {"rows": listed, "form": form, "q": q})


@_administrator
def user_detail(request, pk):
    """One account: active or not, its groups, its global roles (granted through the API)."""
    person = get_object_or_404(_visible(User, request.user).select_related("profile"), pk=pk)
    groups_form = GroupsForm(initial={"groups": person.groups.all()})
    if request.method == "POST":
        person = get_object_or_404(_visible(User, request.user, CHANGE), pk=pk)
        action = request.POST.get("action")
        if action in ("activate", "deactivate"):
            if person.pk == request.user.pk and action == "deactivate":
                messages.error(request, "You cannot deactivate your own account here; ask another administrator.")
            else:
                with transaction.atomic():
                    person.is_active = action == "activate"
                    person.save(update_fields=["is_active"])
                    record("update", person, before={"is_active": not person.is_active}, after={"is_active": person.is_active})
                messages.success(request, f"{person.username} is now {'active' if person.is_active else 'deactivated'}.")
            return redirect("manage-user", pk=person.pk)
        if action == "groups":
            groups_form = GroupsForm(request.POST)
            if groups_form.is_valid():
                with transaction.atomic():
                    before = sorted(person.groups.values_list("name", flat=True))
                    person.groups.set(groups_form.cleaned_data["groups"])
                    after = sorted(g.name for g in groups_form.cleaned_data["groups"])
                    record("update", person, before={"groups": before}, after={"groups": after})
                messages.success(request, f"Groups of {person.username} saved.")
                return redirect("manage-user", pk=person.pk)
        else:
            messages.error(request, "Unknown action.")
            return redirect("manage-user", pk=person.pk)
    return render(request, "manage/user_detail.html", {
        "person": person, "source": source_of(person), "directory": source_of(person) == AccountSource.DIRECTORY,
        "groups_form": groups_form, "bindings": _bindings(user=person), "global_roles": GLOBAL_ROLES,
    })


@_administrator
def groups(request):
    rows = _visible(Group, request.user).order_by("name").prefetch_related("user_set")
    form = NewGroupForm(request.POST or None)
    if request.method == "POST":
        if restriction(Group, request.user, CHANGE) is not None:
            raise Http404("no such page")
        if form.is_valid():
            with transaction.atomic():
                group = form.save()
                record("create", group, after={"name": group.name}, message="group created in the portal")
            messages.success(request, f"Created the group {group.name}.")
            return redirect("manage-group", pk=group.pk)
    roles = {}
    for group_id, role in GlobalRoleBinding.objects.filter(group__isnull=False).values_list("group_id", "role"):
        roles.setdefault(group_id, []).append(GlobalRole(role).label)
    listed = [{"group": g, "members": len(g.user_set.all()), "roles": roles.get(g.pk, [])} for g in rows[:500]]
    return render(request, "manage/groups.html", {"rows": listed, "form": form})


@_administrator
def group_detail(request, pk):
    group = get_object_or_404(_visible(Group, request.user), pk=pk)
    form = MemberForm(request.POST or None)
    if request.method == "POST":
        group = get_object_or_404(_visible(Group, request.user, CHANGE), pk=pk)
        action = request.POST.get("action")
        if action == "add" and form.is_valid():
            member = form.cleaned_data["username"]
            with transaction.atomic():
                group.user_set.add(member)
                record("update", member, after={"groups": f"+{group.name}"}, message=f"added to group {group.name}")
            messages.success(request, f"{member.username} is now in {group.name}.")
            return redirect("manage-group", pk=group.pk)
        if action == "remove":
            member = User.objects.filter(pk=request.POST.get("user") if str(request.POST.get("user", "")).isdigit() else None).first()
            if member is None or not group.user_set.filter(pk=member.pk).exists():
                messages.error(request, "That user is not in the group.")
            else:
                with transaction.atomic():
                    group.user_set.remove(member)
                    record("update", member, after={"groups": f"-{group.name}"}, message=f"removed from group {group.name}")
                messages.success(request, f"{member.username} left {group.name}.")
            return redirect("manage-group", pk=group.pk)
        if action != "add":
            messages.error(request, "Unknown action.")
            return redirect("manage-group", pk=group.pk)
    return render(request, "manage/group_detail.html", {
        "group": group, "members": group.user_set.order_by("username"), "form": form,
        "bindings": _bindings(group=group), "global_roles": GLOBAL_ROLES,
    })


@require_POST
@_administrator
def group_delete(request, pk):
    group = get_object_or_404(_visible(Group, request.user, CHANGE), pk=pk)
    with transaction.atomic():
        record("delete", group, before={"name": group.name, "members": group.user_set.count()})
        name = group.name
        group.delete()
    messages.success(request, f"Deleted the group {name}; its role bindings went with it.")
    return redirect("manage-groups")
