import sys

from django.core.management.base import BaseCommand

from portal import liveness


class Command(BaseCommand):
    help = (
        "Exit 0 when the named component (Celery worker, beat or the watcher) touched its liveness file "
        "recently, 1 otherwise: a liveness probe for processes that serve no HTTP."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--component", required=True, choices=liveness.COMPONENTS)
        parser.add_argument("--max-age", type=float, default=liveness.STALE_SECONDS,
                            help=f"seconds after which a heartbeat is stale (default {liveness.STALE_SECONDS})")

    def handle(self, component, max_age, **options):
        alive, message = liveness.check(component, max_age)
        (self.stdout if alive else self.stderr).write(message)
        if not alive:
            sys.exit(1)
