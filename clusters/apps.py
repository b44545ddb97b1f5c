from django.apps import AppConfig


class ClustersConfig(AppConfig):
    name = "clusters"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from clusters import permissions, tasks

        permissions.register()
        tasks.register_failure_handlers()
