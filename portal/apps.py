from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from portal import (
            audit,  # noqa: F401  (connects the audit signal handlers)
            signals,  # noqa: F401
        )
