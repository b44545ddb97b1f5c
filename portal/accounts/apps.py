from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "portal.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Accounts"

    def ready(self):
        from portal.accounts import activation, backends  # noqa: F401  (backends connects the ldap_error receiver)

        activation.connect()
