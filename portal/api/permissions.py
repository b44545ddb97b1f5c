from rest_framework import permissions

from portal.models import ApiToken


class TokenScopePermission(permissions.IsAuthenticated):
    """Signed in, active, and read-only tokens may only read.  Object rules live in restrict()."""

    message = "read-only token: this request would change something"

    def has_permission(self, request, view):
        if not super().has_permission(request, view) or not request.user.is_active:
            self.message = "authentication required"
            return False
        if isinstance(request.auth, ApiToken) and request.auth.read_only:
            self.message = "read-only token: this request would change something"
            return request.method in permissions.SAFE_METHODS
        return True
