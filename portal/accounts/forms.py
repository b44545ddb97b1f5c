import logging

from django import forms
from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm

from portal.accounts import throttle

logger = logging.getLogger("portal.accounts")

INVALID = "invalid credentials"
UNAVAILABLE = "directory unavailable; try again later (local accounts can still log in)"


class LoginForm(AuthenticationForm):
    """The one login form, for the portal and the admin: throttled, and one message for every
    kind of refusal (the reason goes to the log)."""

    error_messages = {
        "invalid_login": INVALID,
        "inactive": INVALID,
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        password = self.cleaned_data.get("password")
        if not username or not password:
            return self.cleaned_data
        address = throttle.client_address(self.request)
        # The throttle (axes' backend, first in AUTHENTICATION_BACKENDS) takes one attempt for
        # this (name, address) or refuses before any other backend sees the password.
        self.user_cache = authenticate(self.request, username=username, password=password)
        if self.user_cache is None or not self.user_cache.is_active:
            wait = getattr(self.request, "login_locked_for", 0)
            if wait:
                logger.warning("login refused for %r from %s: throttled for %ss", username, address, wait)
                raise forms.ValidationError(throttle.message(wait), code="throttled")
            if self.user_cache is None and getattr(self.request, "directory_unavailable", False):
                raise forms.ValidationError(UNAVAILABLE, code="unavailable")
            reason = getattr(self.request, "login_failure_reason", None) or (
                "inactive account" if self.user_cache is not None else "wrong password, unknown or disabled user"
            )
            logger.warning("login refused for %r from %s: %s", username, address, reason)
            self.user_cache = None
            raise forms.ValidationError(INVALID, code="invalid_login")
        return self.cleaned_data
