import django_filters
from django.db.models import Q
from django.utils import timezone

from monitoring.models import Alert, AlertRule, Notification, Notifier


class NotifierFilter(django_filters.FilterSet):
    class Meta:
        model = Notifier
        fields = ["kind", "enabled"]


class AlertRuleFilter(django_filters.FilterSet):
    class Meta:
        model = AlertRule
        fields = ["cluster", "project", "condition", "severity", "enabled"]


class AlertFilter(django_filters.FilterSet):
    acknowledged = django_filters.BooleanFilter(field_name="acknowledged", lookup_expr="isnull", exclude=True)
    silenced = django_filters.BooleanFilter(method="filter_silenced")

    class Meta:
        model = Alert
        fields = ["rule", "cluster", "project", "state", "severity", "acknowledged", "silenced"]

    def filter_silenced(self, queryset, name, value):
        silenced = Q(silenced_until__gt=timezone.now())
        return queryset.filter(silenced) if value else queryset.exclude(silenced)


class NotificationFilter(django_filters.FilterSet):
    class Meta:
        model = Notification
        fields = ["notifier", "rule", "cluster", "kind", "status"]


class UsageFilter(django_filters.FilterSet):
    """``range`` picks the resolution: 1h raw points, 24h 5-minute, 7d and 30d hourly averages."""

    range = django_filters.ChoiceFilter(choices=[(r, r) for r in ("1h", "24h", "7d", "30d")], method="filter_range", required=True)

    class Meta:
        from monitoring.models import UsageSample

        model = UsageSample
        fields = ["cluster", "kind", "name", "range"]

    def filter_range(self, queryset, name, value):
        from monitoring.usage import RANGES

        span, resolution = RANGES[value]
        return queryset.filter(resolution=resolution, at__gte=timezone.now() - span)
