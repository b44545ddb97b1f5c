import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Make sure an administrator account exists.  Its password is PORTAL_ADMIN_PASSWORD, or one is "
        "generated and printed once (and kept in var/admin-password for the next `make run`)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("PORTAL_ADMIN_USERNAME", "admin"))
        parser.add_argument("--password-file", default=None)

    def handle(self, username, password_file, **options):
        User = get_user_model()
        password = os.environ.get("PORTAL_ADMIN_PASSWORD")
        user = User.objects.filter(username=username).first()
        if user is not None:
            if password:
                user.set_password(password)
                user.save(update_fields=["password"])
                self.stdout.write(f"administrator {username!r}: password set from PORTAL_ADMIN_PASSWORD")
            else:
                self.stdout.write(f"administrator {username!r} exists")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(self.style.WARNING(f"created administrator {username!r} with password: {password}  (shown once)"))
            if password_file:
                with open(password_file, "w") as handle:
                    handle.write(password + "\n")
                os.chmod(password_file, 0o600)
        else:
            self.stdout.write(f"created administrator {username!r} with the password from PORTAL_ADMIN_PASSWORD")
