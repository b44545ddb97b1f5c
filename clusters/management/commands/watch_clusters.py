import logging
import resource
import signal

from django.core.management.base import BaseCommand

from clusters.shards import Membership
from clusters.watcher import Supervisor
from portal import liveness
from portal.garbage import pace_for_a_large_heap


class Command(BaseCommand):
    help = ("Follow watches on every monitored cluster and keep the inventory live (run next to the Celery worker). "
            "Run several for more clusters: they share them by leases in Redis.")

    def add_arguments(self, parser):
        parser.add_argument("--poll", type=float, default=5.0, help="seconds between checks for added, removed or moved clusters")
        parser.add_argument("--member-id", default=None, help="this watcher's name among the watchers, kept across restarts (default: PORTAL_WATCHER_ID, else the host name; give each watcher on one machine its own)")
        parser.add_argument("--alone", action="store_true", help="follow every cluster without sharing them (no lease in Redis)")

    def handle(self, poll, member_id, alone, **options):
        logging.getLogger("clusters").setLevel(logging.INFO)
        # Ten watches a cluster, a connection each: open files up to the hard limit.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        membership = None if alone else Membership(member_id)
        supervisor = Supervisor(poll_seconds=poll, membership=membership)
        reconcile = supervisor.reconcile

        def reconcile_and_beat():  # every turn of the supervisor's loop (manage.py alive --component watcher)
            liveness.touch("watcher")
            reconcile()

        supervisor.reconcile = reconcile_and_beat
        signal.signal(signal.SIGTERM, lambda *_: supervisor.stop())
        signal.signal(signal.SIGINT, lambda *_: supervisor.stop())
        pace_for_a_large_heap()
        self.stdout.write("watching clusters" + ("" if alone else f" as {membership.member_id}") + "; Ctrl-C stops")
        try:
            supervisor.run()
        finally:
            liveness.clear("watcher")
