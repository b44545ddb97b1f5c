"""Who may turn an account on again.

Any save that turns `is_active` off (the admin's user page, a shell) is an administrator's
deactivation: it is recorded on the profile (`deactivated_by=administrator`) and holds until a
save turns the account on again.  The directory refresh deactivates with a queryset update and
records `deactivated_by=directory`; a later directory login may lift only that.

Directory code (login and refresh) saves the user through django-auth-ldap with an instance it
loaded earlier.  Inside `directory_writes()` such saves never change `is_active`: a deactivation
made meanwhile by an administrator is not overwritten by a stale copy.
"""

import contextvars
from contextlib import contextmanager

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save, pre_save

from portal.accounts.models import Deactivation, Profile

_directory = contextvars.ContextVar("corral_directory_writes", default=False)


@contextmanager
def directory_writes():
    token = _directory.set(True)
    try:
        yield
    finally:
        _directory.reset(token)


def _before_user_save(sender, instance, raw=False, update_fields=None, **kwargs):
    instance._corral_was_active = None
    if raw or instance.pk is None or (update_fields is not None and "is_active" not in update_fields):
        return
    was_active = sender._base_manager.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    if was_active is None:
        return
    if _directory.get():
        instance.is_active = was_active  # the directory turns accounts on only through reactivate()
    else:
        instance._corral_was_active = was_active


def _after_user_save(sender, instance, raw=False, **kwargs):
    was_active = getattr(instance, "_corral_was_active", None)
    if was_active is None or was_active == instance.is_active:
        return
    if not instance.is_active:
        from portal.audit import _context_user, current

        ctx = current()
        admin = _context_user(ctx) if ctx else None
        reason = f"deactivated by {admin.get_username()} in Corral" if admin else "deactivated in Corral"
        Profile.objects.update_or_create(
            user=instance, defaults={"deactivated_by": Deactivation.ADMINISTRATOR, "deactivated_reason": reason[:200]}
        )
    else:
        Profile.objects.filter(user=instance).update(deactivated_by="", deactivated_reason="")


def reactivate_for_directory(user):
    """Turn a directory user on again after the directory said yes, unless an administrator
    turned them off.  Returns whether the user is active."""
    if user.is_active:
        return True
    turned_on = (
        get_user_model().objects.filter(pk=user.pk, is_active=False)
        .exclude(profile__deactivated_by=Deactivation.ADMINISTRATOR).update(is_active=True)
    )
    if turned_on:
        user.is_active = True
    return bool(turned_on)


def connect():
    user_model = get_user_model()
    pre_save.connect(_before_user_save, sender=user_model, dispatch_uid="corral-user-activation-before")
    post_save.connect(_after_user_save, sender=user_model, dispatch_uid="corral-user-activation-after")
