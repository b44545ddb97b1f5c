"""Alert rules, the alerts they raise, where notifications go, and every delivery attempt."""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.utils import timezone

from portal.fields import EncryptedJSONField
from portal.models import ChangeLoggedModel, TimestampedModel
from portal.permissions import RestrictedQuerySet


class NotifierKind(models.TextChoices):
    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook"
    SLACK = "slack", "Slack"
    TEAMS = "teams", "Microsoft Teams"
    PAGERDUTY = "pagerduty", "PagerDuty"
    ALERTMANAGER = "alertmanager", "Alertmanager"


# The keys of a notifier's config that are secrets: stored encrypted (``Notifier.secrets``), never
# returned by the API, never written to the audit trail.  A webhook URL often carries its token.
SECRET_KEYS = {
    NotifierKind.EMAIL: {"password"},
    NotifierKind.WEBHOOK: {"url", "secret"},
    NotifierKind.SLACK: {"url"},
    NotifierKind.TEAMS: {"url"},
    NotifierKind.PAGERDUTY: {"routing_key"},
    NotifierKind.ALERTMANAGER: {"password"},
}
# Every config key each kind takes (secret or not).
CONFIG_KEYS = {
    NotifierKind.EMAIL: {"recipients", "host", "port", "starttls", "username", "password", "sender", "ca_cert", "timeout"},
    NotifierKind.WEBHOOK: {"url", "secret", "timeout"},
    NotifierKind.SLACK: {"url", "timeout"},
    NotifierKind.TEAMS: {"url", "timeout"},
    NotifierKind.PAGERDUTY: {"routing_key", "url", "timeout"},
    NotifierKind.ALERTMANAGER: {"url", "username", "password", "timeout"},
}
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


def _url(value, what):
    try:
        URLValidator(schemes=["http", "https"])(value if isinstance(value, str) else "")
    except ValidationError:
        raise ValidationError({"config": f"{what} needs \"url\": an http(s) URL"}) from None


class Notifier(ChangeLoggedModel):
    """Where alert notifications go.  ``config`` holds what may be shown (recipients, SMTP host);
    the secrets (passwords, webhook URLs, routing keys) are moved into ``secrets`` on save."""

    Kind = NotifierKind

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=NotifierKind.choices)
    # Whose it is: a cluster's (its owners manage it), a project's (its owners manage it), or,
    # with neither, the administrators'.  Rules may use the notifiers their author may see.
    cluster = models.ForeignKey("clusters.Cluster", null=True, blank=True, on_delete=models.CASCADE, related_name="notifiers")
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="notifiers")
    config = models.JSONField(default=dict, blank=True)
    secrets = EncryptedJSONField()
    enabled = models.BooleanField(default=True)
    last_sent = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)

    audit_exclude = ("secrets",)

    class Meta:
        ordering = ["name"]
        # Names are unique where their owners see them: two tenants may both call theirs "ops".
        constraints = [
            models.UniqueConstraint(fields=["name"], condition=models.Q(cluster__isnull=True, project__isnull=True),
                                    name="notifier_name_global"),
            models.UniqueConstraint(fields=["cluster", "name"], condition=models.Q(project__isnull=True), name="notifier_name_cluster"),
            models.UniqueConstraint(fields=["project", "name"], name="notifier_name_project"),
        ]

    def __str__(self):
        return self.name

    def secret_keys(self):
        return SECRET_KEYS.get(self.kind, set())

    def split_secrets(self):
        """Move secret keys out of ``config`` into ``secrets`` (an empty value clears one)."""
        if not isinstance(self.config, dict):
            return
        secrets = dict(self.secrets or {})
        for key in self.secret_keys() & set(self.config):
            value = self.config.pop(key)
            if value in ("", None):
                secrets.pop(key, None)
            else:
                secrets[key] = value
        self.secrets = secrets

    def settings(self):
        """Config and secrets together: what a sender needs."""
        return {**(self.config or {}), **(self.secrets or {})}

    def save(self, *args, **kwargs):
        self.split_secrets()
        super().save(*args, **kwargs)

    def clean(self):
        if self.project_id is not None:
            if self.cluster_id is None:
                self.cluster_id = self.project.cluster_id
            elif self.project.cluster_id != self.cluster_id:
                raise ValidationError({"project": "must be a project of the notifier's cluster"})
        if self.name:
            same = Notifier.objects.filter(name=self.name, project_id=self.project_id).exclude(pk=self.pk)
            if self.project_id is None:
                same = same.filter(cluster_id=self.cluster_id)
            if same.exists():
                raise ValidationError({"name": "a notifier with this name already exists here"})
        if not isinstance(self.config, dict):
            raise ValidationError({"config": "must be an object"})
        if any(isinstance(value, str) and "\x00" in value for value in self.config.values()):
            raise ValidationError({"config": "values must not contain NUL characters"})
        if self.kind not in CONFIG_KEYS:
            return  # the field's own choices validation names it
        unknown = sorted(set(self.config) - CONFIG_KEYS[self.kind])
        if unknown:
            raise ValidationError({"config": f"unknown key(s) for a {self.kind} notifier: {', '.join(unknown)}"})
        merged = {**(self.secrets or {}), **{k: v for k, v in self.config.items() if v not in ("", None)}}
        for key, most in (("port", 65535), ("timeout", 60)):
            if key in merged and (not isinstance(merged[key], int) or isinstance(merged[key], bool) or not 0 < merged[key] <= most):
                raise ValidationError({"config": f'"{key}" must be a whole number between 1 and {most}'})
        if "starttls" in merged and not isinstance(merged["starttls"], bool):
            raise ValidationError({"config": '"starttls" must be true or false'})
        for key in ("host", "username", "password", "sender", "ca_cert", "secret", "routing_key"):
            if key in merged and not isinstance(merged[key], str):
                raise ValidationError({"config": f'"{key}" must be a string'})
        if self.kind == NotifierKind.EMAIL:
            recipients = merged.get("recipients")
            if not isinstance(recipients, list) or not recipients:
                raise ValidationError({"config": 'an e-mail notifier needs "recipients": a list of addresses'})
            for address in recipients:
                if not isinstance(address, str):
                    raise ValidationError({"config": '"recipients" must be e-mail addresses (strings)'})
                try:
                    validate_email(address)
                except ValidationError:
                    raise ValidationError({"config": f"{address!r} is not an e-mail address"}) from None
            if not merged.get("host"):
                raise ValidationError({"config": 'an e-mail notifier needs "host": the SMTP server'})
            if merged.get("sender"):
                try:
                    validate_email(merged["sender"])
                except ValidationError:
                    raise ValidationError({"config": f"{merged['sender']!r} is not an e-mail address"}) from None
        elif self.kind in (NotifierKind.WEBHOOK, NotifierKind.SLACK, NotifierKind.TEAMS, NotifierKind.ALERTMANAGER):
            _url(merged.get("url"), f"a {self.kind} notifier")
        elif self.kind == NotifierKind.PAGERDUTY:
            if not merged.get("routing_key"):
                raise ValidationError({"config": 'a pagerduty notifier needs "routing_key": the integration key'})
            if "url" in merged:
                _url(merged["url"], "a pagerduty notifier's events endpoint")
        self._check_outbound(merged)

    def _check_outbound(self, merged):
        """The host must not resolve to an address the notifiers' outbound policy refuses."""
        from monitoring.outbound import host_problem, url_problem

        if self.kind == NotifierKind.EMAIL:
            problem = host_problem(merged.get("host"), merged.get("port") or 587)
        else:
            problem = url_problem(merged["url"]) if merged.get("url") else None
        if problem:
            raise ValidationError({"config": problem})


class AlertCondition(models.TextChoices):
    CLUSTER_UNAVAILABLE = "cluster-unavailable", "Cluster unavailable"
    NODE_NOT_READY = "node-not-ready", "Node not ready"
    POD_NOT_RUNNING = "pod-not-running", "Pod not running"
    POD_NOT_SCHEDULED = "pod-not-scheduled", "Pod not scheduled"
    POD_RESTARTS = "pod-restarts", "Pod restarts at or above threshold"
    WORKLOAD_UNAVAILABLE = "workload-unavailable", "Workload has fewer available replicas than threshold % of desired"
    WARNING_EVENT = "warning-event", "Warning events (selector: kind, reason, namespace)"
    CPU_USAGE = "cpu-usage-percent", "Node CPU in use at or above threshold (% of allocatable, from metrics)"
    MEMORY_USAGE = "memory-usage-percent", "Node memory in use at or above threshold (% of allocatable, from metrics)"
    PROJECT_QUOTA = "project-quota-percent", "Project quota used at or above threshold (% of the pool, per resource)"
    KUBERNETES_EOL = "kubernetes-version-eol", "Cluster's Kubernetes version past its end of life"
    CPU_REQUESTED = "cpu-requested-percent", "CPU requested at or above threshold (% of allocatable)"
    MEMORY_REQUESTED = "memory-requested-percent", "Memory requested at or above threshold (% of allocatable)"
    CONTROL_PLANE = "control-plane-unhealthy", "Control-plane check failing (the API server's /livez and /readyz)"
    POD_CRASH_LOOPING = "pod-crash-looping", "Pod crash-looping (a container waiting in CrashLoopBackOff)"


THRESHOLD_REQUIRED = {AlertCondition.POD_RESTARTS, AlertCondition.PROJECT_QUOTA, AlertCondition.CPU_REQUESTED, AlertCondition.MEMORY_REQUESTED,
                      AlertCondition.CPU_USAGE, AlertCondition.MEMORY_USAGE}
# Selector keys each condition understands.
SELECTOR_KEYS = {
    AlertCondition.CLUSTER_UNAVAILABLE: set(),
    AlertCondition.NODE_NOT_READY: {"node", "labels"},
    AlertCondition.CPU_REQUESTED: {"node", "labels"},
    AlertCondition.MEMORY_REQUESTED: {"node", "labels"},
    AlertCondition.PROJECT_QUOTA: {"resource"},
    AlertCondition.KUBERNETES_EOL: set(),
    AlertCondition.CPU_USAGE: {"node", "labels"},
    AlertCondition.MEMORY_USAGE: {"node", "labels"},
    AlertCondition.POD_NOT_RUNNING: {"namespace", "labels", "node"},
    AlertCondition.POD_NOT_SCHEDULED: {"namespace", "labels"},
    AlertCondition.POD_RESTARTS: {"namespace", "labels", "node"},
    AlertCondition.POD_CRASH_LOOPING: {"namespace", "labels", "node"},
    AlertCondition.CONTROL_PLANE: {"check"},
    AlertCondition.WORKLOAD_UNAVAILABLE: {"namespace", "labels"},
    AlertCondition.WARNING_EVENT: {"namespace", "kind", "reason"},
}


# How far back pod restart counts are kept (the longest window a pod-restarts rule may take).
RESTART_HISTORY = timedelta(days=1)


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class AlertRule(ChangeLoggedModel):
    """A condition watched on one cluster (or every cluster, administrators only), or on one
    project's namespaces.  Grouping follows Alertmanager: the first notification of a group waits
    ``group_wait``; later changes go out at most every ``group_interval``; a group still firing
    with nothing new is sent again after ``repeat_interval``."""

    Condition = AlertCondition

    name = models.CharField(max_length=100)
    cluster = models.ForeignKey(
        "clusters.Cluster", null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules",
        help_text="Empty: every cluster (administrators only)",
    )
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules",
        help_text="A project rule watches only the project's namespaces",
    )
    condition = models.CharField(max_length=32, choices=AlertCondition.choices)
    threshold = models.FloatField(null=True, blank=True, help_text="For restarts and percentages")
    window_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="pod-restarts: count the restarts within this window (at most a day); empty: all of them")
    selector = models.JSONField(
        default=dict, blank=True,
        help_text='Which objects: {"namespace": "web", "labels": {"app": "api"}, "node": "worker-1", "kind": "Pod", "reason": "BackOff"}',
    )
    for_seconds = models.PositiveIntegerField(default=60, help_text="How long the condition must hold before firing")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    enabled = models.BooleanField(default=True)
    notifiers = models.ManyToManyField(Notifier, blank=True, related_name="rules")
    group_wait_seconds = models.PositiveIntegerField(default=30)
    group_interval_seconds = models.PositiveIntegerField(default=300)
    repeat_interval_seconds = models.PositiveIntegerField(default=4 * 3600)
    send_resolved = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        if self.condition in THRESHOLD_REQUIRED and self.threshold is None:
            raise ValidationError({"threshold": f"is required for the condition {self.condition}"})
        if self.threshold is not None and self.threshold < 0:
            raise ValidationError({"threshold": "must not be negative"})
        if self.window_seconds is not None:
            if self.condition != AlertCondition.POD_RESTARTS:
                raise ValidationError({"window_seconds": "is only for the pod-restarts condition"})
            if not 60 <= self.window_seconds <= RESTART_HISTORY.total_seconds():
                raise ValidationError({"window_seconds": "must be between 60 and 86400 (a day)"})
        if self.project_id is not None:
            if self.cluster_id is None:
                self.cluster_id = self.project.cluster_id
            elif self.project.cluster_id != self.cluster_id:
                raise ValidationError({"project": "must be a project of the rule's cluster"})
            if self.condition in (AlertCondition.CLUSTER_UNAVAILABLE, AlertCondition.NODE_NOT_READY, AlertCondition.CPU_USAGE,
                                  AlertCondition.KUBERNETES_EOL, AlertCondition.CONTROL_PLANE,
                                  AlertCondition.MEMORY_USAGE, AlertCondition.CPU_REQUESTED, AlertCondition.MEMORY_REQUESTED):
                raise ValidationError({"condition": f"{self.condition} is about the whole cluster: make it a cluster rule"})
        if not isinstance(self.selector, dict):
            raise ValidationError({"selector": "must be an object"})
        allowed = SELECTOR_KEYS.get(self.condition, set())
        unknown = sorted(set(self.selector) - allowed)
        if unknown:
            hint = ", ".join(sorted(allowed)) or "none"
            raise ValidationError({"selector": f"{', '.join(unknown)}: not a selector of {self.condition} (it takes: {hint})"})
        for key, value in self.selector.items():
            if key == "labels":
                if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                    raise ValidationError({"selector": '"labels" must map label names to values (strings)'})
            elif not isinstance(value, str) or not value or len(value) > 253:
                raise ValidationError({"selector": f'"{key}" must be a non-empty string'})


class AlertState(models.TextChoices):
    PENDING = "pending", "Pending"  # the condition holds, for less than the rule's for_seconds
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


OPEN_STATES = (AlertState.PENDING, AlertState.FIRING)


class AlertQuerySet(RestrictedQuerySet):
    def open(self):
        return self.filter(state__in=OPEN_STATES)

    def silenced(self, now=None):
        return self.filter(silenced_until__gt=now or timezone.now())


class Alert(TimestampedModel):
    State = AlertState

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.CASCADE, related_name="alerts")
    # The project the alert is about (the rule's, or the namespace's of its target): its people see it.
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    # Set when the alert is about the cluster itself (the cluster, a node), not about something in
    # a namespace: then the cluster's members see it, as they see its nodes.  Pods and workloads
    # are only for the cluster's owners and their project's people.
    cluster_wide = models.ForeignKey("clusters.Cluster", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    target = models.CharField(max_length=300, help_text="What the alert is about, e.g. node/worker-1")
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.FIRING, db_index=True)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    labels = models.JSONField(default=dict, blank=True)
    value = models.FloatField(null=True, blank=True)
    message = models.TextField(blank=True)
    started = models.DateTimeField(default=timezone.now, help_text="Since when the condition holds")
    fired = models.DateTimeField(null=True, blank=True)
    resolved = models.DateTimeField(null=True, blank=True)
    last_notified = models.DateTimeField(null=True, blank=True)
    notified_state = models.CharField(max_length=16, blank=True, help_text="The state the last notification told")
    acknowledged = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    acknowledge_comment = models.CharField(max_length=500, blank=True)
    silenced_until = models.DateTimeField(null=True, blank=True)
    silenced_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    silence_reason = models.CharField(max_length=500, blank=True)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-started"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "cluster", "target"], condition=models.Q(state__in=["pending", "firing"]), name="alert_one_open_per_target"
            )
        ]
        indexes = [models.Index(fields=["rule", "cluster", "state"], name="alert_rule_cluster_state")]

    def __str__(self):
        return f"{self.rule}: {self.target} ({self.state})"

    def is_silenced(self, now=None):
        return self.silenced_until is not None and self.silenced_until > (now or timezone.now())


class AlertGroup(models.Model):
    """Alertmanager's aggregation group: the alerts of one rule on one cluster, notified together."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="+")
    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.CASCADE, related_name="+")
    next_flush = models.DateTimeField(null=True, blank=True, db_index=True)
    last_flush = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "cluster"], name="alertgroup_one_per_rule_cluster")]


class NotificationKind(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"
    TEST = "test", "Test"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Notification(TimestampedModel):
    """One message to one notifier (about a group of alerts, or a test), with every attempt."""

    notifier = models.ForeignKey(Notifier, on_delete=models.CASCADE, related_name="notifications")
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cluster = models.ForeignKey("clusters.Cluster", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    alerts = models.ManyToManyField(Alert, blank=True, related_name="notifications")
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING, db_index=True)
    subject = models.CharField(max_length=300)
    payload = models.JSONField(default=dict, blank=True, help_text="What was sent (never a secret)")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt = models.DateTimeField(null=True, blank=True)
    sent = models.DateTimeField(null=True, blank=True)
    response_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return f"{self.notifier}: {self.subject} ({self.status})"


class DeliveryAttempt(models.Model):
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField(default=False)
    response_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["notification", "number"]

    def __str__(self):
        return f"attempt {self.number}: {'ok' if self.ok else self.error or self.response_code}"


class UsageKind(models.TextChoices):
    CLUSTER = "cluster", "Cluster"
    NODE = "node", "Node"
    NAMESPACE = "namespace", "Namespace"
    WORKLOAD = "workload", "Workload"
    PROJECT = "project", "Project"


class UsageSample(models.Model):
    """CPU and memory in use, from the cluster's metrics.k8s.io: per cluster, node, namespace,
    workload and project (pods are summed up, never kept one by one).  ``resolution`` 0 is a raw
    collection (every 30 s, kept a day); 300 and 3600 are 5-minute and hourly averages (kept 30
    days and a year).  ``cluster_wide`` and ``project`` decide who sees it, as for alerts."""

    Kind = UsageKind

    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.CharField(max_length=16, choices=UsageKind.choices)
    name = models.CharField(max_length=320, help_text="node name, namespace, namespace/workload, project id; empty for the cluster")
    resolution = models.PositiveIntegerField(default=0)
    at = models.DateTimeField()
    cpu_m = models.FloatField()
    memory_bytes = models.FloatField()
    samples = models.PositiveIntegerField(default=1)
    cluster_wide = models.ForeignKey("clusters.Cluster", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="+")

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["at"]
        constraints = [models.UniqueConstraint(fields=["cluster", "kind", "name", "resolution", "at"], name="usage_one_point")]
        indexes = [models.Index(fields=["resolution", "at"], name="usage_resolution_at")]


class ClusterUsageStatus(models.Model):
    """Whether the cluster serves metrics.k8s.io (no: "no usage metrics"), as of the last collection."""

    cluster = models.OneToOneField("clusters.Cluster", on_delete=models.CASCADE, related_name="usage_status")
    available = models.BooleanField(default=False)
    checked = models.DateTimeField(default=timezone.now)
    error = models.CharField(max_length=500, blank=True)


class RestartSample(models.Model):
    """A pod's restart count went up: from ``previous`` to ``restarts``, seen at ``at``.  Only
    increases are kept, for a day (``RESTART_HISTORY``): what "restarts >= N within M minutes" needs,
    and next to nothing for the pods that never restart.  ``pod_id`` is no database constraint: the
    inventory deletes pods in bulk, and the periodic pruning drops the rows of pods gone."""

    pod = models.ForeignKey("clusters.Pod", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.CASCADE, related_name="+", db_index=False)
    at = models.DateTimeField()
    restarts = models.IntegerField()
    previous = models.IntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pod", "restarts"], name="restartsample_one_per_count")]
        indexes = [models.Index(fields=["cluster", "at"], name="restartsample_cluster_at")]


class ClusterMonitorState(models.Model):
    """What monitoring keeps per cluster besides usage: the control plane's failing checks (from
    /livez?verbose and /readyz?verbose) and since when pod restarts are followed."""

    cluster = models.OneToOneField("clusters.Cluster", on_delete=models.CASCADE, related_name="monitor_state")
    control_plane_checked = models.DateTimeField(null=True, blank=True)
    # [{"check": "etcd", "endpoint": "readyz", "reason": "failed: reason withheld"}]
    control_plane_failing = models.JSONField(default=list, blank=True)
    control_plane_error = models.CharField(max_length=500, blank=True)
    # The last time restart counts were recorded, and the newest pod row then: a pod row older than
    # that without a sample had no restart then, so all its restarts are new.
    restarts_checked = models.DateTimeField(null=True, blank=True)
    restarts_pod_id = models.BigIntegerField(default=0)
