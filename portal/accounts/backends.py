"""Directory sign-in: django-auth-ldap's backend with Corral's rules.

- A local account (no directory profile) is never signed in, nor taken over, by the directory.
- Every refusal is logged with its reason for the operator; the user only sees "invalid credentials".
- A directory that is down or too slow makes the login fail within PORTAL_LDAP_TIMEOUT_SECONDS
  and marks the request, so the login page can say "directory unavailable".
- A deactivated user's session stops working at once (LDAPBackend.get_user does not check).
- An account an administrator deactivated in Corral stays off, whatever the directory says
  (portal/accounts/activation.py).
"""

import contextvars
import logging
from contextlib import contextmanager

import ldap
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_auth_ldap.backend import LDAPBackend, _LDAPUser, ldap_error

from portal.accounts.activation import directory_writes, reactivate_for_directory
from portal.accounts.models import AccountSource, Deactivation, Profile, deactivated_by, source_of

logger = logging.getLogger("portal.accounts")

DIRECTORY_BACKEND_PATH = "portal.accounts.backends.DirectoryBackend"

# LDAP errors seen during the current call: django-auth-ldap swallows some (the user search)
# and only reports them through the ldap_error signal.
_errors = contextvars.ContextVar("corral_ldap_errors", default=None)


class DirectoryUnavailable(Exception):
    """The directory did not answer, or answered with an error that is not about the user."""


@contextmanager
def capture_ldap_errors():
    errors = []
    token = _errors.set(errors)
    try:
        yield errors
    finally:
        _errors.reset(token)


def _note_ldap_error(sender, context=None, exception=None, **kwargs):
    errors = _errors.get()
    if errors is not None:
        errors.append(exception)


ldap_error.connect(_note_ldap_error, dispatch_uid="corral-ldap-errors")


def _refuse(request, username, reason, *, unavailable=False):
    logger.warning("directory login refused for %r: %s", username, reason)
    if request is not None:
        request.login_failure_reason = reason
        if unavailable:
            request.directory_unavailable = True


def directory_disabled(ldap_user):
    """Why the directory marks this account disabled, or ''."""
    attrs = ldap_user.attrs or {}
    if attrs.get("pwdAccountLockedTime"):
        return "locked in the directory (pwdAccountLockedTime)"
    uac = (attrs.get("userAccountControl") or attrs.get("useraccountcontrol") or ["0"])[0]
    try:
        if int(uac) & 0x2:
            return "disabled in Active Directory (userAccountControl)"
    except ValueError:
        pass
    return ""


class DirectoryBackend(LDAPBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if not username or not password:
            return None
        username = username.strip()
        if "\x00" in username:  # no directory or database holds such a name
            _refuse(request, username, "NUL character in the user name")
            return None
        existing = get_user_model().objects.filter(username__iexact=username).select_related("profile").first()
        if existing is not None and source_of(existing) != AccountSource.DIRECTORY:
            _refuse(request, username, "a local account has this name; the directory may not sign it in")
            return None
        if existing is not None and deactivated_by(existing) == Deactivation.ADMINISTRATOR:
            _refuse(request, username, "deactivated by an administrator in Corral")
            return None
        with capture_ldap_errors() as errors, directory_writes():
            return self._authenticate(request, username, password, errors)

    def _authenticate(self, request, username, password, errors):
        ldap_user = _LDAPUser(self, username=username, request=request)
        try:
            ldap_user._authenticate_user_dn(password)
            disabled = directory_disabled(ldap_user)
            if disabled:
                raise ldap_user.AuthenticationFailed(disabled)
            ldap_user._check_requirements()
            ldap_user._get_or_create_user()
        except ldap_user.AuthenticationFailed as exc:
            if errors:
                _refuse(request, username, f"directory unavailable: {errors[-1]!r}", unavailable=True)
            else:
                _refuse(request, username, str(exc))
            return None
        except ldap.LDAPError as exc:
            _refuse(request, username, f"directory unavailable: {exc!r}", unavailable=True)
            return None
        user = ldap_user._user
        if not reactivate_for_directory(user):  # the directory has just said yes; an administrator has not
            _refuse(request, username, "deactivated by an administrator in Corral")
            return None
        record_directory_user(user, ldap_user.dn)
        logger.info("directory login of %r (%s)", username, ldap_user.dn)
        return user

    def get_user(self, user_id):
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None


def record_directory_user(user, dn):
    Profile.objects.update_or_create(
        user=user, defaults={"source": AccountSource.DIRECTORY, "directory_dn": dn, "directory_refreshed": timezone.now()}
    )
    # The directory lifts its own deactivation, never an administrator's.
    Profile.objects.filter(user=user, deactivated_by=Deactivation.DIRECTORY).update(deactivated_by="", deactivated_reason="")


def refresh_user(backend, user):
    """Bring one directory user up to date without their password.

    Returns "" when the user is still allowed in (groups and flags refreshed), else the reason
    they should be deactivated.  Raises DirectoryUnavailable rather than guess.
    """
    with capture_ldap_errors() as errors, directory_writes():
        ldap_user = _LDAPUser(backend, username=user.get_username())
        try:
            dn = ldap_user.dn
            if errors:
                raise DirectoryUnavailable(repr(errors[-1]))
            if dn is None:
                return "no longer in the directory"
            disabled = directory_disabled(ldap_user)
            if disabled:
                return disabled
            try:
                ldap_user._check_requirements()
            except ldap_user.AuthenticationFailed:
                return "no longer in the required group"
            ldap_user._get_or_create_user(force_populate=True)
        except ldap_user.AuthenticationFailed as exc:
            raise DirectoryUnavailable(repr(errors[-1]) if errors else str(exc)) from None
        except ldap.LDAPError as exc:
            raise DirectoryUnavailable(repr(exc)) from None
    record_directory_user(user, dn)
    return ""
