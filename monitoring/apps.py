from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from monitoring import permissions, signals  # noqa: F401 - connects the receivers

        permissions.register()
