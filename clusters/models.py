"""Clusters and their inventory.

A ``Cluster`` is a Kubernetes cluster Corral manages.  Its inventory (nodes, namespaces,
workloads, pods, services, events) is a copy of what the cluster reports, written by sync tasks
and keyed by (cluster, Kubernetes uid) so a sync can upsert; people never edit it by hand.
"""

import re

from django.db import IntegrityError, models, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django.utils.text import slugify

from clusters.roles import CLUSTER_MEMBER, CLUSTER_OWNER
from portal.fields import EncryptedJSONField
from portal.models import ChangeLoggedModel, RoleBindingBase
from portal.permissions import RestrictedQuerySet
from portal.states import StateMachineMixin
from portal.validators import validate_dns1123_label, validate_label_map


class ClusterState(models.TextChoices):
    PENDING = "pending", "Pending"
    PROVISIONING = "provisioning", "Provisioning"
    ACTIVE = "active", "Active"
    UPDATING = "updating", "Updating"
    UNAVAILABLE = "unavailable", "Unavailable"
    ERROR = "error", "Error"
    REMOVING = "removing", "Removing"


S = ClusterState
CLUSTER_TRANSITIONS = {
    S.PENDING: {S.PROVISIONING, S.ACTIVE, S.UNAVAILABLE, S.ERROR, S.REMOVING},
    S.PROVISIONING: {S.ACTIVE, S.ERROR, S.REMOVING},
    S.ACTIVE: {S.UPDATING, S.UNAVAILABLE, S.ERROR, S.REMOVING},
    S.UPDATING: {S.ACTIVE, S.UNAVAILABLE, S.ERROR, S.REMOVING},
    S.UNAVAILABLE: {S.ACTIVE, S.ERROR, S.REMOVING},
    S.ERROR: {S.PROVISIONING, S.ACTIVE, S.UNAVAILABLE, S.REMOVING},
    S.REMOVING: {S.ERROR},  # a removal that failed; removing again retries
}


class ClusterKind(models.TextChoices):
    KUBERNETES = "kubernetes", "Kubernetes"
    SWARM = "swarm", "Docker Swarm"


class ClusterDriver(models.TextChoices):
    IMPORTED = "imported", "Imported"
    SANDBOX = "sandbox", "Sandbox (local control plane with simulated nodes)"
    CAPI = "capi", "Cluster API (made from a ClusterClass on a management cluster)"


def name_taken_error(name, user, exclude_pk=None):
    """The error for ``name`` when ``user`` already sees a cluster of that name, else None."""
    taken = Cluster.objects.restrict(user, "view").filter(name=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    return f"you already have a cluster named {name!r}" if taken.exists() else None


class ClusterQuerySet(RestrictedQuerySet):
    def active(self):
        return self.filter(state=ClusterState.ACTIVE)

    def kubernetes(self):
        return self.filter(kind=ClusterKind.KUBERNETES)

    def swarm(self):
        return self.filter(kind=ClusterKind.SWARM)

    def monitored(self):
        """Clusters whose health and inventory Corral keeps current."""
        return self.filter(state__in=[S.ACTIVE, S.UPDATING, S.UNAVAILABLE])

    _summary_for = None  # (user,) once with_summary() asked for the figures

    def _clone(self):
        clone = super()._clone()
        clone._summary_for = self._summary_for
        return clone

    def with_summary(self, user=None):
        """Node, pod and capacity figures on each cluster fetched (``nodes_total``, ``pods_total``...),
        read like ``prefetch_related``: after the clusters, two grouped queries for all of them (the
        nodes', the pods'), however many there are.  Given a ``user``, the figures count only the
        nodes and pods that user may see: a project member learns nothing of other projects' pods
        from a total."""
        clone = self._chain()
        clone._summary_for = (user,)
        return clone

    def _fetch_all(self):
        fetched = self._result_cache is None
        super()._fetch_all()
        if fetched and self._summary_for is not None and self._iterable_class is models.query.ModelIterable:
            attach_summaries(self._result_cache, *self._summary_for)


SUMMARY_FIGURES = ("nodes_total", "nodes_ready", "cpu_allocatable_m", "memory_allocatable_bytes",
                   "pods_total", "cpu_requested_m", "memory_requested_bytes")


def attach_summaries(clusters, user=None):
    """Set the ``SUMMARY_FIGURES`` on ``clusters`` (of what ``user`` may see, when given), in two
    grouped queries whatever their number."""
    figures = {c.pk: dict.fromkeys(SUMMARY_FIGURES, 0) for c in clusters}
    if figures:
        nodes = Node.objects.filter(cluster_id__in=list(figures))
        pods = Pod.objects.filter(cluster_id__in=list(figures))
        if user is not None:
            nodes, pods = nodes.restrict(user, "view"), pods.restrict(user, "view")
        running = ~Q(phase__in=["Succeeded", "Failed"])
        rows = list(nodes.order_by().values("cluster_id").annotate(
            nodes_total=Count("pk"), nodes_ready=Count("pk", filter=Q(ready=True)),
            cpu_allocatable_m=Sum("cpu_allocatable_m"), memory_allocatable_bytes=Sum("memory_allocatable_bytes")))
        rows += pods.order_by().values("cluster_id").annotate(
            pods_total=Count("pk"), cpu_requested_m=Sum("cpu_request_m", filter=running),
            memory_requested_bytes=Sum("memory_request_bytes", filter=running))
        for row in rows:
            cluster_figures = figures[row.pop("cluster_id")]
            cluster_figures.update((name, value or 0) for name, value in row.items())
    for cluster in clusters:
        for name, value in figures[cluster.pk].items():
            setattr(cluster, name, value)


class Cluster(StateMachineMixin, ChangeLoggedModel):
    State = ClusterState
    Kind = ClusterKind
    TRANSITIONS = CLUSTER_TRANSITIONS

    # A display name, unique among the clusters one person may see (not globally: a name taken by a
    # cluster someone may not see must not be a way to learn it exists).  ``slug`` is unique and
    # derived from the name, with a number appended when taken.
    name = models.CharField(max_length=100, db_index=True)
    slug = models.SlugField(max_length=63, unique=True, validators=[validate_dns1123_label], editable=False)
    description = models.TextField(blank=True)
    labels = models.JSONField(default=dict, blank=True, validators=[validate_label_map])
    # What Corral talks to: a Kubernetes API server, or a Docker Swarm manager's Engine API.
    kind = models.CharField(max_length=16, choices=ClusterKind.choices, default=ClusterKind.KUBERNETES, db_index=True)
    driver = models.CharField(max_length=20, choices=ClusterDriver.choices, default=ClusterDriver.IMPORTED)
    provider = models.CharField(max_length=50, blank=True, help_text="Where it runs: eks, gke, on-premises, kwok...")
    driver_config = models.JSONField(default=dict, blank=True, help_text="Driver options, e.g. {\"nodes\": 3} for a sandbox")
    state = models.CharField(max_length=16, choices=ClusterState.choices, default=ClusterState.PENDING, db_index=True)
    state_since = models.DateTimeField(default=timezone.now)
    kubernetes_version = models.CharField(max_length=50, blank=True)
    # A Kubernetes API URL, or a Docker endpoint as given (unix:///..., tcp://host:port, ssh://user@host).
    api_endpoint = models.CharField(max_length=300, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_synced = models.DateTimeField(null=True, blank=True)
    # Objects the last syncs could not store (each skipped, the rest stored): resource, namespace,
    # name, uid and why.  A full sync replaces the list; watch events add to it.
    sync_warnings = models.JSONField(default=list, blank=True, editable=False)
    # The APIs Corral reads that the last sync found not served or failing discovery (a turned-off
    # group, an aggregated API whose backend is down): group_version, resources, reason.
    missing_apis = models.JSONField(default=list, blank=True, editable=False)
    # Runs the Cluster API controllers: its ClusterClasses are offered for new clusters (the capi
    # driver).  Set by its owners; only where the API serves cluster.x-k8s.io.
    is_management = models.BooleanField("management cluster", default=False, help_text="Runs Cluster API: new clusters can be made from its ClusterClasses")
    # server, ca_data, token or client cert/key: encrypted at rest, never shown by the API or admin.
    credentials = EncryptedJSONField()

    objects = ClusterQuerySet.as_manager()
    audit_exclude = ("credentials",)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        if self.slug:
            return super().save(*args, **kwargs)
        base = re.sub(r"[^a-z0-9-]+", "-", slugify(self.name))[:55].strip("-") or "cluster"
        for n in range(1, 1000):
            self.slug = base if n == 1 else f"{base}-{n}"
            if Cluster.objects.filter(slug=self.slug).exists():
                continue
            try:
                with transaction.atomic():
                    return super().save(*args, **kwargs)
            except IntegrityError:
                if not Cluster.objects.filter(slug=self.slug).exists():
                    raise
        raise IntegrityError(f"no free slug for cluster {self.name!r}")

    def set_state(self, target, error=None):
        """Move to ``target`` (allowed transitions only) and record why; caller saves."""
        changed = self.transition(target)
        if changed:
            self.state_since = timezone.now()
        if error is not None:
            self.last_error = error
        return changed

    @property
    def is_swarm(self):
        return self.kind == ClusterKind.SWARM

    def kubernetes_only(self, what):
        """Why ``what`` (something only a Kubernetes API does) cannot be done here, or ''."""
        return f"cluster {self.name} is a Docker Swarm: {what} needs a Kubernetes API, which a Swarm has not" if self.is_swarm else ""

    @property
    def has_credentials(self):
        return bool(self.credentials)

    def sync_warnings_for(self, user):
        """The sync warnings ``user`` may read: they name objects anywhere in the cluster, so they
        are for those who may change the cluster (its owners, administrators)."""
        from portal.permissions import CHANGE, can

        return self.sync_warnings if self.sync_warnings and can(user, CHANGE, self) else []

    def missing_apis_for(self, user, changeable=None):
        """The APIs the last sync found missing.  Which groups are missing is for everyone who sees
        the cluster (it explains an empty list); why (the failing service's name and message) is
        for those who may change it.  ``changeable``: that answer when already known."""
        from portal.permissions import CHANGE, can

        if not self.missing_apis:
            return []
        if changeable is None:
            changeable = can(user, CHANGE, self)
        return [m if changeable else {**m, "reason": ""} for m in self.missing_apis]


class ClusterMembership(RoleBindingBase):
    class Role(models.TextChoices):
        OWNER = CLUSTER_OWNER, "Cluster owner"
        MEMBER = CLUSTER_MEMBER, "Cluster member"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.MEMBER)


    class Meta:
        ordering = ["cluster", "role", "pk"]
        constraints = [
            RoleBindingBase.subject_constraint("clustermembership_one_subject"),
            models.UniqueConstraint(fields=["cluster", "user"], name="clustermembership_unique_user"),
            models.UniqueConstraint(fields=["cluster", "group"], name="clustermembership_unique_group"),
        ]

    def __str__(self):
        return f"{self.get_role_display()} of {self.cluster}: {self.subject}"


# --- Inventory --------------------------------------------------------------------------------


class InventoryModel(models.Model):
    """A copy of one Kubernetes object; written by sync, read-only for people."""

    # No index of its own: every inventory table has a unique (cluster, ...) index that leads with it.
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+", db_index=False)
    uid = models.CharField(max_length=64)
    name = models.CharField(max_length=253)
    labels = models.JSONField(default=dict, blank=True)
    resource_version = models.CharField(max_length=32, blank=True)
    created_in_cluster = models.DateTimeField(null=True, blank=True)
    synced = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    audited = False

    class Meta:
        abstract = True

    def __str__(self):
        return self.name


def inventory_constraints(prefix):
    return [models.UniqueConstraint(fields=["cluster", "uid"], name=f"{prefix}_unique_uid")]


class Node(InventoryModel):
    roles = models.JSONField(default=list, blank=True)
    kubelet_version = models.CharField(max_length=50, blank=True)
    os_image = models.CharField(max_length=200, blank=True)
    internal_ip = models.CharField(max_length=64, blank=True)
    capacity = models.JSONField(default=dict, blank=True)
    allocatable = models.JSONField(default=dict, blank=True)
    conditions = models.JSONField(default=list, blank=True)
    taints = models.JSONField(default=list, blank=True)
    ready = models.BooleanField(default=False, db_index=True)
    unschedulable = models.BooleanField(default=False)
    cpu_allocatable_m = models.BigIntegerField(default=0)
    memory_allocatable_bytes = models.BigIntegerField(default=0)
    pods_allocatable = models.IntegerField(default=0)
    # Swarm facts beyond the Kubernetes shape: availability, state, leader, manager address.
    details = models.JSONField(default=dict, blank=True)


    class Meta:
        ordering = ["cluster_id", "name"]
        constraints = inventory_constraints("node")
        indexes = [models.Index(fields=["cluster", "name"], name="node_listing")]


class Namespace(InventoryModel):
    """A namespace; ``uid`` is empty while Corral has asked for it but the cluster has not made it."""

    uid = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=63, validators=[validate_dns1123_label])
    phase = models.CharField(max_length=20, blank=True)
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="namespaces")
    resource_quota = models.JSONField(default=dict, blank=True, help_text="This namespace's share of the project quota")


    class Meta:
        ordering = ["cluster", "name"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "name"], name="namespace_unique_name"),
            models.UniqueConstraint(fields=["cluster", "uid"], condition=~Q(uid=""), name="namespace_unique_uid"),
        ]


class NamespacedInventoryModel(InventoryModel):
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")


    class Meta:
        abstract = True


class WorkloadKind(models.TextChoices):
    DEPLOYMENT = "deployment", "Deployment"
    STATEFULSET = "statefulset", "StatefulSet"
    DAEMONSET = "daemonset", "DaemonSet"
    JOB = "job", "Job"
    CRONJOB = "cronjob", "CronJob"
    SERVICE = "service", "Swarm service"


class Workload(NamespacedInventoryModel):
    Kind = WorkloadKind

    kind = models.CharField(max_length=16, choices=WorkloadKind.choices, db_index=True)
    desired_replicas = models.IntegerField(default=0)
    ready_replicas = models.IntegerField(default=0)
    available_replicas = models.IntegerField(default=0)
    images = models.JSONField(default=list, blank=True)
    selector = models.JSONField(default=dict, blank=True)
    paused = models.BooleanField(default=False)
    # Swarm service facts: mode, published ports, update status, constraints, reservations.
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        # Ordered by keys an index covers: a sorted page of 200,000 pods must not sort them all.
        ordering = ["cluster_id", "namespace_id", "name"]
        constraints = inventory_constraints("workload")
        indexes = [models.Index(fields=["cluster", "namespace", "name"], name="workload_listing")]

    @property
    def healthy(self):
        return self.ready_replicas >= self.desired_replicas


class Pod(NamespacedInventoryModel):
    node = models.ForeignKey(Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="pods")
    node_name = models.CharField(max_length=253, blank=True)
    workload = models.ForeignKey(Workload, null=True, blank=True, on_delete=models.SET_NULL, related_name="pods")
    owner_kind = models.CharField(max_length=50, blank=True)
    owner_name = models.CharField(max_length=253, blank=True)
    phase = models.CharField(max_length=20, blank=True, db_index=True)
    ready = models.BooleanField(default=False)
    restarts = models.IntegerField(default=0)
    # Why a container waits (CrashLoopBackOff, ImagePullBackOff...): the first waiting container's.
    waiting_reason = models.CharField(max_length=64, blank=True)
    images = models.JSONField(default=list, blank=True)
    pod_ip = models.CharField(max_length=64, blank=True)
    cpu_request_m = models.BigIntegerField(default=0)
    memory_request_bytes = models.BigIntegerField(default=0)
    started = models.DateTimeField(null=True, blank=True)
    # Swarm task facts: state, desired state, error, slot, container id.
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        # Ordered by keys an index covers: a sorted page of 200,000 pods must not sort them all.
        ordering = ["cluster_id", "namespace_id", "name"]
        constraints = inventory_constraints("pod")
        indexes = [models.Index(fields=["cluster", "namespace", "name"], name="pod_listing")]


class Service(NamespacedInventoryModel):
    type = models.CharField(max_length=20, blank=True)
    cluster_ip = models.CharField(max_length=64, blank=True)
    ports = models.JSONField(default=list, blank=True)
    selector = models.JSONField(default=dict, blank=True)

    class Meta:
        # Ordered by keys an index covers: a sorted page of 200,000 pods must not sort them all.
        ordering = ["cluster_id", "namespace_id", "name"]
        constraints = inventory_constraints("service")
        indexes = [models.Index(fields=["cluster", "namespace", "name"], name="service_listing")]


class SwarmObjectKind(models.TextChoices):
    NETWORK = "network", "Network"
    SECRET = "secret", "Secret"
    CONFIG = "config", "Config"


class SwarmObject(InventoryModel):
    """A Swarm network, secret or config: names and metadata only, never a secret's or config's
    data.  ``namespace`` is its stack's row (None outside any stack: then only the cluster's owners
    see it)."""

    Kind = SwarmObjectKind

    namespace = models.ForeignKey(Namespace, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=SwarmObjectKind.choices, db_index=True)
    # network: driver, scope, attachable, ingress, internal; secret/config: driver, updated.
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["cluster_id", "kind", "name"]
        constraints = inventory_constraints("swarmobject")
        indexes = [models.Index(fields=["cluster", "kind", "name"], name="swarmobject_listing")]

    def __str__(self):
        return f"{self.kind} {self.name}"


class ClusterEvent(InventoryModel):
    """A Kubernetes Event (Corral keeps the recent warnings)."""

    namespace = models.ForeignKey(Namespace, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=16, blank=True, db_index=True)
    reason = models.CharField(max_length=128, blank=True)
    message = models.TextField(blank=True)
    involved_kind = models.CharField(max_length=50, blank=True)
    involved_name = models.CharField(max_length=253, blank=True)
    count = models.IntegerField(default=1)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True, db_index=True)


    class Meta:
        ordering = ["-last_seen", "-pk"]
        constraints = inventory_constraints("clusterevent")

    def __str__(self):
        return f"{self.reason} {self.involved_kind}/{self.involved_name}"


class InventoryTombstone(models.Model):
    """The uid of an object deleted from a cluster, kept for a while so that a list read before
    the deletion cannot bring the object back (Kubernetes never reuses a uid)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+", db_index=False)
    uid = models.CharField(max_length=64)
    deleted = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "uid"], name="inventorytombstone_unique_uid")]
        indexes = [models.Index(fields=["cluster", "deleted"], name="inventorytombstone_age")]

    def __str__(self):
        return self.uid


def grant_creator_ownership(cluster, user):
    """Whoever registers a cluster owns it (unless they are an administrator already)."""
    if user is None or not user.is_authenticated:
        return
    ClusterMembership.objects.get_or_create(cluster=cluster, user=user, defaults={"role": CLUSTER_OWNER})



class ClusterWatchState(models.Model):
    """Where the watcher left each of a cluster's watches (the resourceVersion of the last change it
    committed, or of a bookmark), so that a watcher started again, or the one taking the cluster
    over, resumes the watches from there instead of listing the whole cluster again."""

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, primary_key=True, related_name="+")
    server = models.CharField(max_length=300)  # the versions are only good for this API server
    versions = models.JSONField(default=dict)
    updated = models.DateTimeField(default=timezone.now)
    # When the events' version last moved (a change of an event, or their list).  The API server
    # serves events from etcd, without bookmarks, and compacts etcd every 5 minutes: a version much
    # older is gone, and whoever resumes lists the events at once instead of asking a watch that
    # would be refused.
    events_moved = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"watch state of cluster {self.cluster_id}"
