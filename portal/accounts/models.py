from django.conf import settings
from django.db import models


class AccountSource(models.TextChoices):
    LOCAL = "local", "Local"
    DIRECTORY = "directory", "Directory"


class Deactivation(models.TextChoices):
    """Who turned an account off.  The directory may turn back on only what it turned off."""

    DIRECTORY = "directory", "Directory refresh"
    ADMINISTRATOR = "administrator", "Administrator"


class Profile(models.Model):
    """Where an account comes from.  Users without a profile are local accounts."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    source = models.CharField(max_length=16, choices=AccountSource.choices, default=AccountSource.LOCAL, db_index=True)
    directory_dn = models.CharField("directory DN", max_length=500, blank=True)
    directory_refreshed = models.DateTimeField(null=True, blank=True, help_text="Last login or refresh from the directory")
    deactivated_by = models.CharField(
        max_length=16, choices=Deactivation.choices, blank=True, db_index=True,
        help_text="Set when the account is deactivated.  An administrator's deactivation holds, whatever the "
        "directory says, until an administrator re-activates the account.",
    )
    deactivated_reason = models.CharField(max_length=200, blank=True, help_text="Why the account was deactivated")

    class Meta:
        verbose_name = "profile"

    def __str__(self):
        return f"{self.user} ({self.source})"


def source_of(user):
    profile = getattr(user, "profile", None)
    return profile.source if profile is not None else AccountSource.LOCAL


def deactivated_by(user):
    profile = getattr(user, "profile", None)
    return profile.deactivated_by if profile is not None else ""
