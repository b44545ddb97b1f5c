from django.utils import timezone
from rest_framework import authentication, exceptions

from portal.models import ApiToken


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer crl_...``; tokens are looked up by their public id, checked by hash."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in (self.keyword, "token"):
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'")
        token = ApiToken.authenticate(header[1])
        if token is None:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        if token.kind == ApiToken.Kind.KUBECONFIG:
            raise exceptions.AuthenticationFailed("this is a kubeconfig's token: it works only for kubectl through /k8s/")
        now = timezone.now()
        # Write last use at most once a minute: a busy token must not cost a write per request.
        if token.last_used is None or (now - token.last_used).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


try:
    from drf_spectacular.extensions import OpenApiAuthenticationExtension
except ImportError:  # pragma: no cover
    OpenApiAuthenticationExtension = None

if OpenApiAuthenticationExtension is not None:

    class BearerTokenScheme(OpenApiAuthenticationExtension):
        target_class = "portal.api.authentication.BearerTokenAuthentication"
        name = "bearerAuth"

        def get_security_definition(self, auto_schema):
            return {"type": "http", "scheme": "bearer", "description": "A Corral API token: crl_<id>.<secret>"}
