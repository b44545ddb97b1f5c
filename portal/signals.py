"""Portal-wide signal handlers: the periodic tasks after migrate, and telling open websockets
when someone's access changed (a role binding, a group membership, a deactivation, a sign-out)."""

from django.conf import settings
from django.contrib.auth import get_user_model, user_logged_out
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save, pre_delete
from django.dispatch import receiver

from portal import events, permissions


@receiver(post_migrate)
def install_periodic_tasks(sender, app_config=None, using="default", **kwargs):
    if app_config is None or app_config.label != "portal":
        return
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, spec in settings.PERIODIC_TASKS.items():
        seconds = int(spec["every"].total_seconds())
        schedule, _ = IntervalSchedule.objects.using(using).get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.using(using).get_or_create(name=name, defaults={"task": spec["task"], "interval": schedule})


# --- live access -----------------------------------------------------------------------------------

_binding_models = None


def binding_models():
    """The models that bind roles: every registered scope's bindings and the global ones."""
    global _binding_models
    if _binding_models is not None:
        return _binding_models
    from django.apps import apps

    from portal.models import GlobalRoleBinding

    found = frozenset({GlobalRoleBinding, *(scope.bindings().model for scope in permissions.scopes().values())})
    if apps.ready:  # every app has registered its scopes
        _binding_models = found
    return found


def _users_of_group(group_id):
    return list(get_user_model().objects.filter(groups=group_id).values_list("pk", flat=True)) if group_id else []


@receiver(post_save)
@receiver(post_delete)
def _binding_changed(sender, instance, raw=False, **kwargs):
    if raw or sender not in binding_models():
        return
    events.access_changed([instance.user_id] if instance.user_id else _users_of_group(instance.group_id))


@receiver(pre_delete, sender=Group)
def _group_deleted(sender, instance, **kwargs):
    # Its bindings and memberships go with it; who was in it must be read first.
    events.access_changed(_users_of_group(instance.pk))


@receiver(m2m_changed, sender=get_user_model().groups.through)
def _group_membership_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if not reverse:  # user.groups.add / remove / clear
        if action in ("post_add", "post_remove", "post_clear"):
            events.access_changed([instance.pk])
    elif action in ("post_add", "post_remove"):  # group.user_set.add / remove
        events.access_changed(pk_set or ())
    elif action == "pre_clear":
        events.access_changed(_users_of_group(instance.pk))


@receiver(post_save, sender=get_user_model())
def _user_saved(sender, instance, created=False, raw=False, update_fields=None, **kwargs):
    if raw or created:
        return
    if update_fields is not None and not {"is_active", "is_superuser"} & set(update_fields):
        return  # a login's last_login, a profile edit
    events.access_changed([instance.pk])


@receiver(post_delete, sender=get_user_model())
def _user_deleted(sender, instance, **kwargs):
    events.access_changed([instance.pk])


@receiver(user_logged_out)
def _signed_out(sender, request=None, user=None, **kwargs):
    session = getattr(request, "session", None)
    if user is not None and session is not None:
        events.session_ended(user.pk, session.session_key)
