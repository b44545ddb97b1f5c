import logging
import signal

from django.core.management.base import BaseCommand

from clusters.watcher import Supervisor
from portal import liveness


class Command(BaseCommand):
    help = "Follow watches on every monitored cluster and keep the inventory live (run next to the Celery worker)."

    def add_arguments(self, parser):
        parser.add_argument("--poll", type=float, default=5.0, help="seconds between checks for added or removed clusters")

    def handle(self, poll, **options):
        logging.getLogger("clusters").setLevel(logging.INFO)
        supervisor = Supervisor(poll_seconds=poll)
        reconcile = supervisor.reconcile

        def reconcile_and_beat():  # every turn of the supervisor's loop (manage.py alive --component watcher)
            liveness.touch("watcher")
            reconcile()

        supervisor.reconcile = reconcile_and_beat
        signal.signal(signal.SIGTERM, lambda *_: supervisor.stop())
        signal.signal(signal.SIGINT, lambda *_: supervisor.stop())
        self.stdout.write("watching clusters; Ctrl-C stops")
        try:
            supervisor.run()
        finally:
            liveness.clear("watcher")
