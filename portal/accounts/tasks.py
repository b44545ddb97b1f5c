import logging

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from portal.accounts.models import AccountSource, Deactivation

logger = logging.getLogger("portal.accounts")


def deactivate(user, reason):
    """Deactivate a user the directory no longer allows in, and revoke their API tokens."""
    from portal.accounts.models import Profile
    from portal.audit import record
    from portal.events import access_changed
    from portal.models import ApiToken

    now = timezone.now()
    if not get_user_model().objects.filter(pk=user.pk, is_active=True).update(is_active=False):
        return False  # turned off meanwhile (by an administrator): theirs stays the recorded reason
    revoked = ApiToken.objects.filter(user=user, revoked__isnull=True).update(revoked=now)
    Profile.objects.filter(user=user).update(
        deactivated_by=Deactivation.DIRECTORY, deactivated_reason=reason[:200], directory_refreshed=now
    )
    access_changed([user.pk])  # their open sockets close now, not at the next periodic recheck
    record("update", user, before={"is_active": True}, after={"is_active": False},
           message=f"deactivated by directory refresh: {reason}; {revoked} API token(s) revoked")
    logger.warning("deactivated directory user %r: %s (%d token(s) revoked)", user.get_username(), reason, revoked)
    return True


@shared_task(ignore_result=True, acks_late=True)
def refresh_directory_users():
    """Refresh every active directory user's groups and flags; deactivate those gone or disabled.

    Stops at the first sign the directory is unavailable: a directory outage must never look
    like every user having left.
    """
    from portal.accounts.backends import DIRECTORY_BACKEND_PATH, DirectoryBackend, DirectoryUnavailable, refresh_user

    if DIRECTORY_BACKEND_PATH not in settings.AUTHENTICATION_BACKENDS:
        return {"skipped": "directory sign-in is not configured"}
    backend = DirectoryBackend()
    counts = {"refreshed": 0, "deactivated": 0}
    users = get_user_model().objects.filter(profile__source=AccountSource.DIRECTORY, is_active=True).order_by("pk")
    for user in users.iterator():
        try:
            reason = refresh_user(backend, user)
        except DirectoryUnavailable as exc:
            logger.error("directory refresh stopped at %r: directory unavailable: %s", user.get_username(), exc)
            counts["error"] = f"directory unavailable: {exc}"
            break
        if reason:
            counts["deactivated"] += deactivate(user, reason)
        else:
            counts["refreshed"] += 1
    logger.info("directory refresh: %s", counts)
    return counts
