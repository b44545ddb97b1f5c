"""Every kind of live event reaches exactly those who may view what it tells of (tests/live_base.py)."""

import pytest
from django.db import transaction

from clusters.events import cluster_changed
from clusters.models import Cluster, Node
from portal import operations
from portal.models import Operation
from projects import reconciler
from projects.models import Project
from tests.live_base import LiveEventTests, NamespacedInventoryTests, marker, watch, watch_event

pytestmark = pytest.mark.django_db(transaction=True)



class TestPodUpdated(NamespacedInventoryTests):
    resource, event = "pods", "pod.updated"


class TestPodDeleted(NamespacedInventoryTests):
    resource, kind, event, check_with_engine = "pods", "DELETED", "pod.deleted", False


class TestWorkloadUpdated(NamespacedInventoryTests):
    resource, event = "deployments", "deployment.updated"


class TestWorkloadDeleted(NamespacedInventoryTests):
    resource, kind, event, check_with_engine = "statefulsets", "DELETED", "statefulset.deleted", False


class TestServiceUpdated(NamespacedInventoryTests):
    resource, event = "services", "service.updated"


class TestServiceDeleted(NamespacedInventoryTests):
    resource, kind, event, check_with_engine = "services", "DELETED", "service.deleted", False


class TestKubernetesEventUpdated(NamespacedInventoryTests):
    resource, event = "events", "event.updated"


class TestKubernetesEventDeleted(NamespacedInventoryTests):
    resource, kind, event, check_with_engine = "events", "DELETED", "event.deleted", False


class TestNodeUpdated(LiveEventTests):
    """Nodes are the cluster's basics: its members see them, its projects' members do not."""

    event = "node.updated"
    heard_by = {"ours": {"admin", "owner", "viewer"}, "theirs": {"admin", "stranger"}}

    def cause(self, world, case):
        cluster = world.places[case][0]
        name = marker("node")
        watch_event(cluster, "nodes", "MODIFIED", name)
        return Node.objects.get(cluster=cluster, name=name), lambda data: data.get("name") == name


class TestNodeDeleted(TestNodeUpdated):
    event, check_with_engine = "node.deleted", False

    def cause(self, world, case):
        cluster = world.places[case][0]
        name = marker("node")
        watch_event(cluster, "nodes", "ADDED", name)
        watch_event(cluster, "nodes", "DELETED", name)
        return None, lambda data: data.get("name") == name


class TestNamespaceUpdated(LiveEventTests):
    """A cluster's members see all its namespaces; a project's members their project's."""

    event = "namespace.updated"
    heard_by = {
        "ours": {"admin", "owner", "viewer", "member"},
        "second": {"admin", "owner", "viewer", "second"},
        "theirs": {"admin", "stranger"},
    }

    def cause(self, world, case):
        cluster, _, namespace = world.places[case]
        # A visible change (a new label): a MODIFIED event that changes nothing Corral shows (a
        # node's heartbeat) is written without a live event.
        watch(cluster)._apply("namespaces", "MODIFIED", {"metadata": {"name": namespace.name, "uid": namespace.uid, "labels": {"changed": case}}})
        return namespace, lambda data: data.get("name") == namespace.name


class TestNamespaceDeleted(TestNamespaceUpdated):
    event, check_with_engine = "namespace.deleted", False

    def cause(self, world, case):
        cluster, _, namespace = world.places[case]
        watch_event(cluster, "namespaces", "DELETED", namespace.name, uid=namespace.uid)
        return None, lambda data: data.get("name") == namespace.name


class TestClusterUpdated(LiveEventTests):
    """On the cluster page and the dashboard feed (heard once), by everyone with a role in it."""

    event = "cluster.updated"
    heard_by = {"ours": {"admin", "owner", "viewer", "member", "second"}, "theirs": {"admin", "stranger"}}

    def cause(self, world, case):
        cluster = world.places[case][0]
        error = marker("down")
        with transaction.atomic():
            locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
            locked.set_state("unavailable", error=error)
            locked.save()
            cluster_changed(locked)
        return locked, lambda data: data.get("last_error") == error


class TestClusterSummary(LiveEventTests):
    """Pod counts and requested CPU only for those who see every pod; node figures for those who
    see every node; nothing for a project member."""

    event = "cluster.summary"
    heard_by = {"ours": {"admin", "owner", "viewer"}, "theirs": {"admin", "stranger"}}
    check_with_engine = False  # an aggregate: see check_data

    def cause(self, world, case):
        cluster = world.places[case][0]
        follower = watch(cluster)  # the summary follows the figures its own writes moved
        name = marker("node")
        follower._apply("nodes", "ADDED", {"metadata": {"name": name, "uid": f"uid-{name}"}})
        follower._flush_summary()
        return None, lambda data: data.get("id") == cluster.pk

    def check_data(self, world, name, case, data):
        assert data["nodes_total"] >= 1
        if name == "viewer":
            assert not {"pods", "cpu_requested_m", "memory_requested_bytes"} & set(data), data
        else:
            assert {"pods", "cpu_requested_m", "memory_requested_bytes"} <= set(data), data


class _Task:
    """Stands in for the Celery task an operation would run: these tests follow the operation's
    own progress (portal.operations.Progress), not a task's work."""

    @staticmethod
    def apply_async(args=(), **options):
        pass


class TestOperationCreated(LiveEventTests):
    """An operation: its creator, its cluster's owners, administrators."""

    event = "operation.created"
    heard_by = {
        "admins": {"admin", "owner"},
        "members": {"admin", "owner", "member"},
        "theirs": {"admin", "stranger"},
    }

    def start(self, world, case):
        cluster, user = {
            "admins": (world.cluster, world.admin),
            "members": (world.cluster, world.member),
            "theirs": (world.other_cluster, world.admin),
        }[case]
        with transaction.atomic():
            return operations.start("sync", _Task, cluster=cluster, user=user)

    def cause(self, world, case):
        op = self.start(world, case)
        return op, lambda data: data.get("id") == op.pk


class TestOperationLog(TestOperationCreated):
    event = "operation.updated"

    def cause(self, world, case):
        op = self.start(world, case)
        line = marker("secret log line")
        with operations.Progress(op.pk) as progress:
            progress.step(50, line)
        op = Operation.objects.get(pk=op.pk)
        return op, lambda data: data.get("id") == op.pk and [entry["message"] for entry in data["log"]] == [line]


class TestProjectUpdated(LiveEventTests):
    """A project's reconcile state and errors: its members and its cluster's owners (on the cluster
    page and the project page, heard once)."""

    event = "project.updated"
    heard_by = {
        "ours": {"admin", "owner", "viewer", "member"},
        "second": {"admin", "owner", "second"},
        "theirs": {"admin", "stranger"},
    }

    def cause(self, world, case):
        cluster, project, _ = world.places[case]
        Project.objects.filter(pk=project.pk).update(sync_state="reconciling")
        reconciler.reconcile(cluster.pk)  # no credentials: every project of the cluster shows why
        project.refresh_from_db()
        return project, lambda data: data.get("id") == project.pk and data.get("sync_state") == "error"


def _alert_about(cluster, condition, target):
    from monitoring import evaluate
    from monitoring.models import Alert, AlertRule

    AlertRule.objects.get_or_create(name=condition, cluster=cluster, condition=condition, defaults={"for_seconds": 0})
    evaluate.evaluate_cluster(cluster.pk)
    alert = Alert.objects.get(cluster=cluster, target=target)
    return alert, lambda data: data.get("id") == alert.pk and data.get("state") == "firing"


class TestAlertAboutAPod(LiveEventTests):
    """An alert about a pod: those who may see the pod (its project's people, the cluster's owners)."""

    event = "alert.updated"
    heard_by = {
        "ours": {"admin", "owner", "viewer", "member"},
        "second": {"admin", "owner", "second"},
        "theirs": {"admin", "stranger"},
    }

    def cause(self, world, case):
        cluster, _, namespace = world.places[case]
        name = marker("pod")
        watch_event(cluster, "pods", "ADDED", name, namespace)  # no phase: not running
        return _alert_about(cluster, "pod-not-running", f"pod/{namespace.name}/{name}")


class TestAlertAboutANode(LiveEventTests):
    """An alert about a node: the cluster's members too, as they see its nodes; no project member."""

    event = "alert.updated"
    heard_by = {"ours": {"admin", "owner", "viewer"}, "theirs": {"admin", "stranger"}}

    def cause(self, world, case):
        cluster = world.places[case][0]
        name = marker("node")
        watch_event(cluster, "nodes", "ADDED", name)  # no Ready condition: not ready
        return _alert_about(cluster, "node-not-ready", f"node/{name}")


class TestUsageCollected(LiveEventTests):
    """A new usage collection: heard on a cluster's page by those who see its figures (members), not
    by project members (they see their project's usage only, through the API)."""

    event = "usage.collected"
    heard_by = {"ours": {"admin", "owner", "viewer"}, "theirs": {"admin", "stranger"}}

    def cause(self, world, case):
        from django.utils import timezone

        from monitoring.models import UsageSample
        from portal.events import emit, group_name

        cluster = world.places[case][0]
        point = UsageSample.objects.create(cluster=cluster, kind="cluster", name="", at=timezone.now(), cpu_m=1, memory_bytes=1,
                                           cluster_wide=cluster)
        marker_at = point.at.isoformat()
        # What monitoring.usage.collect emits after writing a collection (reading metrics.k8s.io aside).
        emit("usage.collected", {"cluster": cluster.pk, "at": marker_at}, point, group_name("cluster", cluster.pk))
        return point, lambda data: data.get("cluster") == cluster.pk and data.get("at") == marker_at
