import django_filters

from monitoring.models import Alert, AlertRule, Notifier


class NotifierFilter(django_filters.FilterSet):
    class Meta:
        model = Notifier
        fields = ["kind", "enabled"]


class AlertRuleFilter(django_filters.FilterSet):
    class Meta:
        model = AlertRule
        fields = ["cluster", "condition", "severity", "enabled"]


class AlertFilter(django_filters.FilterSet):
    class Meta:
        model = Alert
        fields = ["rule", "cluster", "state"]
