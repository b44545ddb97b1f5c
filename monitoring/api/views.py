from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from monitoring import delivery, filters
from monitoring.api import serializers as s
from monitoring.evaluate import announce
from monitoring.models import Alert, AlertRule, Notification, Notifier, UsageSample
from portal.api.viewsets import ModelViewSet, ReadOnlyModelViewSet, RestrictedViewSetMixin
from portal.audit import record
from portal.permissions import CHANGE


class NotifierViewSet(ModelViewSet):
    """Where alerts go: a cluster's (its owners), a project's (its owners and the cluster's), or
    the administrators' (neither).  Secrets are write-only; ``test`` sends one message now."""

    queryset = Notifier.objects.all()
    serializer_class = s.NotifierSerializer
    filterset_class = filters.NotifierFilter
    search_fields = ["name"]
    object_actions = {"test": CHANGE}

    @extend_schema(request=None, responses={200: s.NotificationSerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a test notification now (one attempt, recorded); the answer says how it went."""
        notifier = self.get_object()
        notification = delivery.send_test(notifier, request.user)
        record("action", notifier, after={"status": notification.status}, message=f"test notification: {notification.status}")
        return Response(s.NotificationSerializer(notification).data)


class AlertRuleViewSet(ModelViewSet):
    queryset = AlertRule.objects.select_related("cluster", "project").prefetch_related("notifiers")
    serializer_class = s.AlertRuleSerializer
    filterset_class = filters.AlertRuleFilter
    search_fields = ["name"]


class AlertViewSet(ReadOnlyModelViewSet):
    """Alerts of the clusters and projects one may see; acknowledge and silence them."""

    queryset = Alert.objects.select_related("rule", "cluster", "acknowledged_by", "silenced_by")
    serializer_class = s.AlertSerializer
    filterset_class = filters.AlertFilter
    search_fields = ["target", "message"]
    object_actions = {"acknowledge": CHANGE, "silence": CHANGE, "unsilence": CHANGE}

    def _change(self, alert, fields, message):
        with transaction.atomic():
            before = {k: str(getattr(alert, k)) if getattr(alert, k) is not None else None for k in fields}
            for key, value in fields.items():
                setattr(alert, key, value)
            alert.save(update_fields=[*fields, "modified"])
            after = {k: str(v) if v is not None else None for k, v in fields.items()}
            record("action", alert, before=before, after=after, message=message)
            announce(alert)
        return Response(s.AlertSerializer(alert).data)

    @extend_schema(request=s.AcknowledgeSerializer, responses={200: s.AlertSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """Someone is on it: the alert is no longer repeated (it still resolves and notifies)."""
        alert = self.get_object()
        data = s.AcknowledgeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._change(alert, {"acknowledged": timezone.now(), "acknowledged_by": request.user,
                                    "acknowledge_comment": data.validated_data["comment"]}, "acknowledged")

    @extend_schema(request=s.SilenceSerializer, responses={200: s.AlertSerializer})
    @action(detail=True, methods=["post"])
    def silence(self, request, pk=None):
        """No notifications about the alert for a duration or until a time, with who and why."""
        alert = self.get_object()
        data = s.SilenceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        until = v.get("until") or timezone.now() + timedelta(seconds=v["duration_seconds"])
        return self._change(alert, {"silenced_until": until, "silenced_by": request.user, "silence_reason": v["reason"]},
                            f"silenced until {until.isoformat()}")

    @extend_schema(request=None, responses={200: s.AlertSerializer})
    @action(detail=True, methods=["post"])
    def unsilence(self, request, pk=None):
        alert = self.get_object()
        return self._change(alert, {"silenced_until": None, "silenced_by": None, "silence_reason": ""}, "silence ended")


class NotificationViewSet(ReadOnlyModelViewSet):
    """Every notification sent (or being retried) and each delivery attempt, of the notifiers one may see."""

    queryset = Notification.objects.select_related("notifier").prefetch_related("attempt_log", "alerts")
    serializer_class = s.NotificationSerializer
    filterset_class = filters.NotificationFilter
    search_fields = ["subject", "error"]


class UsageViewSet(RestrictedViewSetMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """CPU and memory in use over time (``range`` 1h, 24h, 7d or 30d), per cluster, node, namespace,
    workload or project, for what the caller may see; the charts read it."""

    queryset = UsageSample.objects.all()
    serializer_class = s.UsageSampleSerializer
    filterset_class = filters.UsageFilter
    ordering_fields = ["at"]
