from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models import Q

        from portal import (
            audit,  # noqa: F401  (connects the audit signal handlers)
            permissions,
            signals,  # noqa: F401
        )
        from portal.models import ApiToken

        # A token is its owner's alone (administrators see all of them).
        permissions.register(ApiToken, extra=lambda user, action: Q(user=user))
