from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from monitoring.models import Alert, AlertRule, DeliveryAttempt, Notification, Notifier
from portal.api.serializers import ModelSerializer, StrictSerializer


class NotifierSerializer(ModelSerializer):
    """``config`` takes every setting of the kind, secrets included (``password``, ``url`` of a
    webhook, Slack or Teams, ``secret``, ``routing_key``); secrets are stored encrypted and never
    returned: ``secrets_set`` names those that are set.  An empty string clears a secret; a
    secret left out of a change is kept."""

    secrets_set = serializers.SerializerMethodField()

    class Meta:
        model = Notifier
        fields = ["id", "name", "kind", "cluster", "project", "config", "enabled", "secrets_set", "last_sent", "last_error",
                  "last_error_at", "created", "modified"]
        read_only_fields = ["last_sent", "last_error", "last_error_at", "created", "modified"]
        validators = []  # names are unique per owner: the model's clean() says so, naming the field

    def validate(self, attrs):
        project = attrs.get("project", getattr(self.instance, "project", None))
        if project is not None and attrs.get("cluster", getattr(self.instance, "cluster", None)) is None:
            attrs["cluster"] = project.cluster
        return super().validate(attrs)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_secrets_set(self, obj):
        return sorted(obj.secrets or {})

    def to_representation(self, instance):
        data = super().to_representation(instance)
        secret = instance.secret_keys()
        data["config"] = {k: v for k, v in (instance.config or {}).items() if k not in secret}
        return data


class AlertRuleSerializer(ModelSerializer):
    notifiers = serializers.PrimaryKeyRelatedField(queryset=Notifier.objects.all(), many=True, required=False)

    class Meta:
        model = AlertRule
        fields = [
            "id", "name", "cluster", "project", "condition", "threshold", "window_seconds", "selector", "for_seconds", "severity", "enabled", "notifiers",
            "group_wait_seconds", "group_interval_seconds", "repeat_interval_seconds", "send_resolved", "created", "modified",
        ]
        read_only_fields = ["created", "modified"]
        extra_kwargs = {name: {"max_value": 30 * 24 * 3600} for name in
                        ("for_seconds", "group_wait_seconds", "group_interval_seconds", "repeat_interval_seconds")}

    def validate(self, attrs):
        project = attrs.get("project", getattr(self.instance, "project", None))
        if project is not None and attrs.get("cluster", getattr(self.instance, "cluster", None)) is None:
            attrs["cluster"] = project.cluster
        return super().validate(attrs)


class AlertSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    silenced_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    silenced = serializers.SerializerMethodField()

    class Meta:
        model = Alert
        fields = [
            "id", "rule", "rule_name", "cluster", "project", "target", "state", "severity", "labels", "value", "message", "started",
            "fired", "resolved", "last_notified", "acknowledged", "acknowledged_by", "acknowledge_comment", "silenced",
            "silenced_until", "silenced_by", "silence_reason",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.BooleanField())
    def get_silenced(self, obj):
        return obj.is_silenced()


class AcknowledgeSerializer(StrictSerializer):
    comment = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class SilenceSerializer(StrictSerializer):
    """Silence for ``duration_seconds`` or ``until`` a time (one of them), with a reason."""

    duration_seconds = serializers.IntegerField(min_value=60, max_value=365 * 24 * 3600, required=False)
    until = serializers.DateTimeField(required=False)
    reason = serializers.CharField(max_length=500)

    def validate(self, attrs):
        if ("duration_seconds" in attrs) == ("until" in attrs):
            raise serializers.ValidationError({"duration_seconds": "give either duration_seconds or until"})
        if "until" in attrs:
            if attrs["until"] <= timezone.now():
                raise serializers.ValidationError({"until": "must be in the future"})
            if attrs["until"] > timezone.now() + timedelta(days=365):
                raise serializers.ValidationError({"until": "must be within a year"})
        return attrs


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "at", "ok", "response_code", "error", "duration_ms"]
        read_only_fields = fields


class NotificationSerializer(serializers.ModelSerializer):
    attempt_log = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "notifier", "rule", "cluster", "alerts", "kind", "status", "subject", "attempts", "next_attempt", "sent",
                  "response_code", "error", "created", "attempt_log"]
        read_only_fields = fields


class UsageSampleSerializer(serializers.ModelSerializer):
    class Meta:
        from monitoring.models import UsageSample

        model = UsageSample
        fields = ["cluster", "kind", "name", "resolution", "at", "cpu_m", "memory_bytes", "samples"]
        read_only_fields = fields
