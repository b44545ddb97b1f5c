"""Install the periodic tasks from settings once, after migrate; the admin edits them from then on."""

from django.conf import settings
from django.db.models.signals import post_migrate
from django.dispatch import receiver


@receiver(post_migrate)
def install_periodic_tasks(sender, app_config=None, using="default", **kwargs):
    if app_config is None or app_config.label != "portal":
        return
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, spec in settings.PERIODIC_TASKS.items():
        seconds = int(spec["every"].total_seconds())
        schedule, _ = IntervalSchedule.objects.using(using).get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.using(using).get_or_create(name=name, defaults={"task": spec["task"], "interval": schedule})
