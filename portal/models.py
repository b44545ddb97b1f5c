"""What every app shares: base models, the audit trail, long-running operations, API tokens and
global role bindings."""

import hashlib
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from portal.permissions import RestrictedQuerySet
from portal.states import StateMachineMixin


class TimestampedModel(models.Model):
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ChangeLoggedModel(TimestampedModel):
    """A model people change through the admin or API: every change is written to the audit trail."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, editable=False, on_delete=models.SET_NULL, related_name="+"
    )

    objects = RestrictedQuerySet.as_manager()

    audited = True
    # Fields whose values never reach the audit trail (secrets).
    audit_exclude = ()

    class Meta:
        abstract = True


# --- Roles ------------------------------------------------------------------------------------


class GlobalRole(models.TextChoices):
    ADMINISTRATOR = "administrator", "Administrator"
    STANDARD_USER = "standard-user", "Standard user"
    # Global permissions a standard user does not have unless granted (Rancher's "Create new
    # clusters"); the names are registered with the engine by the clusters app.
    CREATE_CLUSTERS = "clusters-create", "Create clusters"
    USE_SANDBOX = "sandbox-use", "Use the sandbox driver"


class RoleBindingBase(ChangeLoggedModel):
    """A role granted to one user or to one group (a directory group mirrored at login)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="+")

    class Meta:
        abstract = True

    @property
    def subject(self):
        return f"user {self.user}" if self.user_id else f"group {self.group}"

    def clean(self):
        if bool(self.user_id) == bool(self.group_id):
            raise ValidationError("a role is granted to exactly one user or one group")

    @staticmethod
    def subject_constraint(name):
        return models.CheckConstraint(
            condition=(models.Q(user__isnull=False, group__isnull=True) | models.Q(user__isnull=True, group__isnull=False)),
            name=name,
        )


class GlobalRoleBinding(RoleBindingBase):
    role = models.CharField(max_length=32, choices=GlobalRole.choices, default=GlobalRole.STANDARD_USER)


    class Meta:
        ordering = ["role", "pk"]
        constraints = [
            RoleBindingBase.subject_constraint("globalrolebinding_one_subject"),
            models.UniqueConstraint(fields=["user", "role"], name="globalrolebinding_unique_user"),
            models.UniqueConstraint(fields=["group", "role"], name="globalrolebinding_unique_group"),
        ]

    def __str__(self):
        return f"{self.get_role_display()}: {self.subject}"


# --- Audit trail ------------------------------------------------------------------------------


class AuditAction(models.TextChoices):
    CREATE = "create", "Created"
    UPDATE = "update", "Updated"
    DELETE = "delete", "Deleted"
    ACTION = "action", "Action"


class AuditEvent(models.Model):
    time = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150, blank=True, help_text="Kept when the user is deleted")
    request_id = models.UUIDField(null=True, blank=True, db_index=True)
    source = models.CharField(max_length=16, blank=True, help_text="api, admin, portal or task")
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    object_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    message = models.CharField(max_length=300, blank=True)

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["-time", "-pk"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self):
        return f"{self.username or 'system'} {self.action} {self.object_type} {self.object_repr}"


# --- Long-running operations ------------------------------------------------------------------


class OperationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Operation(StateMachineMixin, TimestampedModel):
    """A long task (provision, sync, reconcile...) that the UI can follow live."""

    Status = OperationStatus
    TRANSITIONS = {
        OperationStatus.PENDING: {OperationStatus.RUNNING, OperationStatus.CANCELLED, OperationStatus.FAILED},
        OperationStatus.RUNNING: {OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.CANCELLED},
        OperationStatus.SUCCEEDED: set(),
        OperationStatus.FAILED: set(),
        OperationStatus.CANCELLED: set(),
    }
    state_field = "status"

    kind = models.CharField(max_length=50, db_index=True)
    cluster = models.ForeignKey("clusters.Cluster", null=True, blank=True, on_delete=models.SET_NULL, related_name="operations")
    target_repr = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=OperationStatus.choices, default=OperationStatus.PENDING, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    log = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    objects = RestrictedQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self):
        return f"{self.kind} {self.target_repr} ({self.status})"

    @property
    def is_finished(self):
        return self.status in (OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.CANCELLED)

    @property
    def duration(self):
        if self.started and self.finished:
            return self.finished - self.started
        return None


# --- API tokens -------------------------------------------------------------------------------

TOKEN_PREFIX = "crl_"


def hash_token_secret(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiTokenQuerySet(RestrictedQuerySet):
    def usable(self):
        return self.filter(revoked__isnull=True, expires__gt=timezone.now(), user__is_active=True)


class TokenKind(models.TextChoices):
    API = "api", "API (and kubectl)"
    KUBECONFIG = "kubeconfig", "kubeconfig (kubectl through Corral only)"


class ApiToken(TimestampedModel):
    """A bearer token.  Only a hash is stored; the token itself is shown once, when made.
    A kubeconfig's token works only on the Kubernetes API proxy (``/k8s/``), not on Corral's API."""

    Kind = TokenKind

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    key_id = models.CharField(max_length=12, unique=True, editable=False, help_text="Public part, used to find the token")
    key_hash = models.CharField(max_length=64, editable=False)
    description = models.CharField(max_length=200, blank=True)
    expires = models.DateTimeField()
    read_only = models.BooleanField(default=False, help_text="Allows only reading (GET, HEAD, OPTIONS)")
    kind = models.CharField(max_length=16, choices=TokenKind.choices, default=TokenKind.API, editable=False)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return f"{TOKEN_PREFIX}{self.key_id}… ({self.user})"

    @classmethod
    def issue(cls, user, *, days=None, description="", read_only=False, kind=TokenKind.API):
        """Make a token; returns (token row, the secret string to show once)."""
        days = settings.API_TOKEN_DEFAULT_DAYS if days is None else days
        if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
            raise ValidationError({"expires_in_days": f"must be between 1 and {settings.API_TOKEN_MAX_DAYS} days"})
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user,
            key_id=key_id,
            key_hash=hash_token_secret(secret),
            description=description,
            read_only=read_only,
            kind=kind,
            expires=timezone.now() + timedelta(days=days),
        )
        return token, f"{TOKEN_PREFIX}{key_id}.{secret}"

    @classmethod
    def authenticate(cls, presented):
        """The usable token matching the presented string, or None."""
        if not presented.startswith(TOKEN_PREFIX) or "." not in presented:
            return None
        key_id, _, secret = presented[len(TOKEN_PREFIX):].partition(".")
        token = cls.objects.usable().select_related("user").filter(key_id=key_id).first()
        if token is None or not secrets.compare_digest(token.key_hash, hash_token_secret(secret)):
            return None
        return token

    @property
    def is_usable(self):
        return self.revoked is None and self.expires > timezone.now()


def new_request_id():
    return uuid.uuid4()
