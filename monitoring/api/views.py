from monitoring import filters
from monitoring.api import serializers as s
from monitoring.models import Alert, AlertRule, Notifier
from portal.api.viewsets import ModelViewSet, ReadOnlyModelViewSet


class NotifierViewSet(ModelViewSet):
    queryset = Notifier.objects.all()
    serializer_class = s.NotifierSerializer
    filterset_class = filters.NotifierFilter
    search_fields = ["name"]


class AlertRuleViewSet(ModelViewSet):
    queryset = AlertRule.objects.select_related("cluster").prefetch_related("notifiers")
    serializer_class = s.AlertRuleSerializer
    filterset_class = filters.AlertRuleFilter
    search_fields = ["name"]


class AlertViewSet(ReadOnlyModelViewSet):
    queryset = Alert.objects.select_related("rule", "cluster")
    serializer_class = s.AlertSerializer
    filterset_class = filters.AlertFilter
    search_fields = ["target", "message"]
