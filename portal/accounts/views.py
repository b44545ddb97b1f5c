"""The login page (portal and admin) and the portal's API token pages."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render, resolve_url
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.accounts.forms import LoginForm
from portal.accounts.models import source_of
from portal.models import ApiToken


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["directory_enabled"] = getattr(settings, "PORTAL_LDAP_ENABLED", False)
        return context


def admin_login(request, extra_context=None):
    """The admin's login: the portal's login page, then back to the admin."""
    if request.user.is_authenticated:
        # Signed in but not staff: sending them to the login page would loop.
        return HttpResponseForbidden("Your account may not use the administration site.")
    target = request.GET.get("next") or resolve_url("admin:index")
    return redirect(f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': target})}")


class TokenForm:
    """Plain validation of the create-token form (the model does the range check)."""

    def __init__(self, data):
        self.description = data.get("description", "").strip()[:200]
        self.read_only = data.get("read_only") in ("on", "true", "1")
        days = data.get("expires_in_days", "").strip()
        self.days = int(days) if days.isdigit() else None


@login_required
def tokens(request):
    context = {
        "tokens": ApiToken.objects.filter(user=request.user).order_by("-created"),
        "default_days": settings.API_TOKEN_DEFAULT_DAYS,
        "max_days": settings.API_TOKEN_MAX_DAYS,
        "source": source_of(request.user),
        "now": timezone.now(),
    }
    if request.method == "POST":
        form = TokenForm(request.POST)
        try:
            token, secret = ApiToken.issue(request.user, days=form.days, description=form.description, read_only=form.read_only)
        except ValidationError as exc:
            context["error"] = "; ".join(m for ms in exc.message_dict.values() for m in ms)
            return render(request, "accounts/tokens.html", context, status=400)
        from portal.audit import record

        record("create", token, after={"key_id": token.key_id, "expires": token.expires.isoformat(), "read_only": token.read_only})
        # Shown once, in this response only; the page is not cached.
        context.update(new_token=token, secret=secret)
        response = render(request, "accounts/tokens.html", context)
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "accounts/tokens.html", context)


@login_required
@require_POST
def revoke_token(request, pk):
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    if token.revoked is None:
        token.revoked = timezone.now()
        token.save(update_fields=["revoked"])
        from portal.audit import record

        record("update", token, before={"revoked": None}, after={"revoked": token.revoked.isoformat()}, message="revoked")
        messages.success(request, f"Token {token.key_id} revoked.")
    return redirect("account-tokens")
