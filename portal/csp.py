"""The Content-Security-Policy header: django-csp's middleware, with two additions per response."""

from csp.constants import UNSAFE_INLINE
from csp.middleware import CSPMiddleware
from django.core.exceptions import DisallowedHost
from rest_framework.renderers import BrowsableAPIRenderer


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        update = dict(parts.update or {})
        try:
            # The live updates connect to ws(s)://<this host>/ws/; 'self' covers that only in CSP 3 browsers.
            origin = f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}"
            update["connect-src"] = [*update.get("connect-src", ()), origin]
        except DisallowedHost:
            pass  # a 400 for a host we do not serve: no websocket to allow
        if isinstance(getattr(response, "accepted_renderer", None), BrowsableAPIRenderer):
            # DRF's browsable API templates carry style="" attributes and a <style>; scripts stay strict.
            update["style-src"] = [*update.get("style-src", ()), UNSAFE_INLINE]
        parts.update = update
        return parts
