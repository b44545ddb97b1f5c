from rest_framework import serializers

from monitoring.models import Alert, AlertRule, Notifier
from portal.api.serializers import ModelSerializer


class NotifierSerializer(ModelSerializer):
    class Meta:
        model = Notifier
        fields = ["id", "name", "kind", "config", "enabled", "created", "modified"]
        read_only_fields = ["created", "modified"]


class AlertRuleSerializer(ModelSerializer):
    notifiers = serializers.PrimaryKeyRelatedField(queryset=Notifier.objects.all(), many=True, required=False)

    class Meta:
        model = AlertRule
        fields = [
            "id", "name", "cluster", "condition", "threshold", "for_seconds", "severity", "enabled", "notifiers",
            "created", "modified",
        ]
        read_only_fields = ["created", "modified"]


class AlertSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True)

    class Meta:
        model = Alert
        fields = ["id", "rule", "rule_name", "cluster", "target", "state", "message", "started", "resolved", "last_notified"]
        read_only_fields = fields
