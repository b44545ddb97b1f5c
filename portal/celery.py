import os

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("corral")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class Liveness(bootsteps.StartStopStep):
    """Touch the worker's liveness file from a timer on the worker's own event loop (portal.liveness):
    a worker whose loop hangs stops touching it, and `manage.py alive --component worker` says so."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        from portal import liveness

        liveness.touch("worker")
        self.tref = worker.timer.call_repeatedly(liveness.INTERVAL_SECONDS, liveness.touch, ("worker",), priority=10)

    def stop(self, worker):
        from portal import liveness

        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        liveness.clear("worker")


app.steps["worker"].add(Liveness)
