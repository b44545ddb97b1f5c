from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from portal.models import ApiToken


class Command(BaseCommand):
    help = "Make an API token for USERNAME and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--days", type=int, default=None, help=f"lifetime in days (default {settings.API_TOKEN_DEFAULT_DAYS}, at most {settings.API_TOKEN_MAX_DAYS})")
        parser.add_argument("--read-only", action="store_true", help="the token may only read")
        parser.add_argument("--description", default="made with manage.py createtoken")

    def handle(self, username, days, read_only, description, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if not user.is_active:
            raise CommandError(f"user {username!r} is disabled")
        try:
            token, secret = ApiToken.issue(user, days=days, description=description, read_only=read_only)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stderr.write(f"token {token.key_id} for {username}, expires {token.expires:%Y-%m-%d %H:%M} UTC{' (read-only)' if read_only else ''}")
        self.stdout.write(secret)
