"""Alert rules, the alerts they raise, and where notifications go."""

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.utils import timezone

from portal.models import ChangeLoggedModel, TimestampedModel
from portal.permissions import RestrictedQuerySet


class NotifierKind(models.TextChoices):
    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook"


class Notifier(ChangeLoggedModel):
    """Where alert notifications go.  ``config``: {"recipients": [...]} or {"url": "https://..."}."""

    Kind = NotifierKind

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=NotifierKind.choices)
    config = models.JSONField(default=dict)
    enabled = models.BooleanField(default=True)


    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        if not isinstance(self.config, dict):
            raise ValidationError({"config": "must be an object"})
        if self.kind == NotifierKind.EMAIL:
            recipients = self.config.get("recipients")
            if not isinstance(recipients, list) or not recipients:
                raise ValidationError({"config": 'an e-mail notifier needs "recipients": a list of addresses'})
            for address in recipients:
                try:
                    validate_email(address)
                except ValidationError:
                    raise ValidationError({"config": f"{address!r} is not an e-mail address"}) from None
        elif self.kind == NotifierKind.WEBHOOK:
            url = self.config.get("url")
            try:
                URLValidator(schemes=["http", "https"])(url or "")
            except ValidationError:
                raise ValidationError({"config": 'a webhook notifier needs "url": an http(s) URL'}) from None


class AlertCondition(models.TextChoices):
    CLUSTER_UNAVAILABLE = "cluster-unavailable", "Cluster unavailable"
    NODE_NOT_READY = "node-not-ready", "Node not ready"
    POD_RESTARTS = "pod-restarts", "Pod restarts at or above threshold"
    WORKLOAD_UNAVAILABLE = "workload-unavailable", "Workload has fewer ready replicas than desired"
    CPU_REQUESTED = "cpu-requested-percent", "CPU requested at or above threshold (% of allocatable)"
    MEMORY_REQUESTED = "memory-requested-percent", "Memory requested at or above threshold (% of allocatable)"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class AlertRule(ChangeLoggedModel):
    Condition = AlertCondition

    name = models.CharField(max_length=100)
    cluster = models.ForeignKey(
        "clusters.Cluster", null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules",
        help_text="Empty: every cluster",
    )
    condition = models.CharField(max_length=32, choices=AlertCondition.choices)
    threshold = models.FloatField(null=True, blank=True, help_text="For restarts and percentages")
    for_seconds = models.PositiveIntegerField(default=60, help_text="How long the condition must hold before firing")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    enabled = models.BooleanField(default=True)
    notifiers = models.ManyToManyField(Notifier, blank=True, related_name="rules")


    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        needs_threshold = self.condition in (AlertCondition.POD_RESTARTS, AlertCondition.CPU_REQUESTED, AlertCondition.MEMORY_REQUESTED)
        if needs_threshold and self.threshold is None:
            raise ValidationError({"threshold": f"is required for the condition {self.condition}"})
        if self.threshold is not None and self.threshold < 0:
            raise ValidationError({"threshold": "must not be negative"})


class AlertState(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class Alert(TimestampedModel):
    State = AlertState

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.CASCADE, related_name="alerts")
    target = models.CharField(max_length=300, help_text="What the alert is about, e.g. node/worker-1")
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.FIRING, db_index=True)
    message = models.TextField(blank=True)
    started = models.DateTimeField(default=timezone.now)
    resolved = models.DateTimeField(null=True, blank=True)
    last_notified = models.DateTimeField(null=True, blank=True)

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["-started"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "cluster", "target"], condition=models.Q(state="firing"), name="alert_one_firing_per_target"
            )
        ]

    def __str__(self):
        return f"{self.rule}: {self.target} ({self.state})"
