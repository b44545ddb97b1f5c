from django.core.management.base import BaseCommand

from portal.fields import reencrypt_stored_values


class Command(BaseCommand):
    help = (
        "Re-encrypt stored credentials with the first encryption key wherever an older key (a rotated "
        "PORTAL_ENCRYPTION_KEYS entry, or the key earlier versions derived) still holds them.  "
        "`make run` runs it at every start; after it, the older keys can be dropped."
    )

    def handle(self, **options):
        rewritten = reencrypt_stored_values()
        if rewritten:
            self.stdout.write(f"re-encrypted {rewritten} stored credential(s) with the current key")
