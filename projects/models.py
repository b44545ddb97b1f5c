"""Projects: groups of namespaces of one cluster with a pooled quota, container defaults and
access granted once for all of them."""

from django.core.exceptions import ValidationError
from django.db import models

from portal.models import ChangeLoggedModel, RoleBindingBase
from portal.permissions import RestrictedQuerySet
from projects.quantities import validate_limits, validate_quota
from projects.roles import PROJECT_MEMBER, PROJECT_OWNER, PROJECT_READ_ONLY


class ProjectSyncState(models.TextChoices):
    IN_SYNC = "in-sync", "In sync"
    RECONCILING = "reconciling", "Reconciling"
    ERROR = "error", "Error"


class ProjectQuerySet(RestrictedQuerySet):
    def of_cluster(self, cluster):
        return self.filter(cluster=cluster)


class Project(ChangeLoggedModel):
    SyncState = ProjectSyncState

    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    is_system = models.BooleanField(default=False, help_text="Holds the cluster's own namespaces (kube-system...)")
    resource_quota = models.JSONField(
        default=dict, blank=True, validators=[validate_quota],
        help_text='The pool for all namespaces, keyed like ResourceQuota "hard": {"limits.cpu": "8", "pods": "100"}',
    )
    namespace_default_quota = models.JSONField(
        default=dict, blank=True, validators=[validate_quota],
        help_text="The share a namespace gets from the pool unless it asks for its own",
    )
    container_default_limits = models.JSONField(
        default=dict, blank=True, validators=[validate_limits],
        help_text='Container defaults (a LimitRange): {"limits.cpu": "500m", "requests.memory": "128Mi"}',
    )
    sync_state = models.CharField(max_length=16, choices=ProjectSyncState.choices, default=ProjectSyncState.RECONCILING)
    sync_error = models.TextField(blank=True)
    last_reconciled = models.DateTimeField(null=True, blank=True)
    quota_status = models.JSONField(
        default=dict, blank=True, editable=False,
        help_text="What the cluster reports: used per key summed over the namespaces, and per namespace hard/used",
    )

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["cluster", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="project_unique_name")]

    def __str__(self):
        return f"{self.cluster}/{self.name}"

    def clean(self):
        from projects.quotas import check_project

        if self.resource_quota and self.namespace_default_quota:
            missing = sorted(set(self.namespace_default_quota) - set(self.resource_quota))
            if missing:
                raise ValidationError(
                    {"namespace_default_quota": f"limits {', '.join(missing)} that the project quota does not pool"}
                )
        if isinstance(self.resource_quota, dict) and isinstance(self.namespace_default_quota, dict):
            check_project(self)


class ProjectMembership(RoleBindingBase):
    class Role(models.TextChoices):
        OWNER = PROJECT_OWNER, "Project owner"
        MEMBER = PROJECT_MEMBER, "Project member"
        READ_ONLY = PROJECT_READ_ONLY, "Read-only"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.MEMBER)


    class Meta:
        ordering = ["project", "role", "pk"]
        constraints = [
            RoleBindingBase.subject_constraint("projectmembership_one_subject"),
            models.UniqueConstraint(fields=["project", "user"], name="projectmembership_unique_user"),
            models.UniqueConstraint(fields=["project", "group"], name="projectmembership_unique_group"),
        ]

    def __str__(self):
        return f"{self.get_role_display()} of {self.project}: {self.subject}"
