"""Every endpoint gets the generic tests of ``APIViewTests``."""

from django.utils import timezone

from clusters.models import Cluster, ClusterEvent, ClusterMembership, Namespace, Node, Pod, Service, Workload
from monitoring.models import Alert, AlertRule
from projects.models import Project, ProjectMembership
from tests.api_base import APIViewTests
from tests.conftest import make_user


class TestClusters(APIViewTests):
    basename = "cluster"
    model = Cluster
    update_data = {"description": "renamed in a test", "labels": {"env": "prod"}}
    delete_status = 202  # removal is an operation

    def make(self, world, cluster, project, namespace, i):
        if i == 0:
            return cluster
        extra = Cluster.objects.create(name=f"{cluster.name}-{i}", driver="sandbox", state="active")
        # Same owner as the given cluster, so the viewer of A sees A's siblings.
        for m in ClusterMembership.objects.filter(cluster=cluster):
            ClusterMembership.objects.create(cluster=extra, user=m.user, group=m.group, role=m.role)
        Node.objects.create(cluster=extra, uid=f"n-{i}", name=f"node-{i}", ready=True, cpu_allocatable_m=4000)
        return extra

    def create_data(self, world):
        return {"name": "charlie", "driver": "sandbox", "driver_config": {"nodes": 2}, "labels": {"team": "a"}}


class TestClusterMemberships(APIViewTests):
    basename = "clustermembership"
    model = ClusterMembership
    update_data = {"role": "cluster-owner"}

    def make(self, world, cluster, project, namespace, i):
        return ClusterMembership.objects.create(cluster=cluster, user=make_user(f"cm-{cluster.pk}-{i}"), role="cluster-member")

    def create_data(self, world):
        make_user("newcomer")
        return {"cluster": world.cluster.pk, "user": "newcomer", "role": "cluster-member"}


class TestProjects(APIViewTests):
    basename = "project"
    model = Project
    update_data = {"description": "changed", "resource_quota": {"pods": "20"}}
    viewer_may_create = True

    def make(self, world, cluster, project, namespace, i):
        if i == 0:
            return project
        extra = Project.objects.create(cluster=cluster, name=f"p-{i}")
        for m in ProjectMembership.objects.filter(project=project):
            ProjectMembership.objects.create(project=extra, user=m.user, group=m.group, role=m.role)
        Namespace.objects.create(cluster=cluster, uid=f"ns-{cluster.pk}-{i}", name=f"ns-{i}", project=extra)
        return extra

    def create_data(self, world):
        return {"cluster": world.cluster.pk, "name": "api", "resource_quota": {"limits.cpu": "4", "pods": "50"}}


class TestProjectMemberships(APIViewTests):
    basename = "projectmembership"
    model = ProjectMembership
    update_data = {"role": "project-owner"}

    def make(self, world, cluster, project, namespace, i):
        return ProjectMembership.objects.create(project=project, user=make_user(f"pm-{project.pk}-{i}"), role="read-only")

    def create_data(self, world):
        make_user("newcomer")
        return {"project": world.project.pk, "user": "newcomer", "role": "project-member"}


class TestAlertRules(APIViewTests):
    basename = "alertrule"
    model = AlertRule
    update_data = {"threshold": 5.0, "severity": "critical"}

    def make(self, world, cluster, project, namespace, i):
        return AlertRule.objects.create(name=f"restarts-{i}", cluster=cluster, condition="pod-restarts", threshold=3)

    def create_data(self, world):
        return {"name": "nodes down", "cluster": world.cluster.pk, "condition": "node-not-ready", "for_seconds": 120}


class TestNodes(APIViewTests):
    basename = "node"
    model = Node
    read_only = True

    def make(self, world, cluster, project, namespace, i):
        return Node.objects.create(cluster=cluster, uid=f"node-{cluster.pk}-{i}", name=f"worker-{i}", ready=True)


class TestNamespaces(APIViewTests):
    """Namespaces come from the clusters; people only move them between projects (PATCH)."""

    basename = "namespace"
    model = Namespace
    read_only = True

    def make(self, world, cluster, project, namespace, i):
        if i == 0:
            return namespace
        return Namespace.objects.create(cluster=cluster, uid=f"ns-{cluster.pk}-{i}", name=f"extra-{i}", project=project)

    def test_viewer_may_read_but_not_change(self, world):
        obj = self.ours(world)
        client = world.client(world.viewer)
        assert client.get(self.detail_url(obj)).status_code == 200
        assert client.patch(self.detail_url(obj), {"project": None}, format="json").status_code == 403
        assert client.post(self.list_url(), {}, format="json").status_code == 405
        assert client.delete(self.detail_url(obj)).status_code == 405
        obj.refresh_from_db()
        assert obj.project == world.project


class TestWorkloads(APIViewTests):
    """Workloads come from the clusters; people deploy, scale, expose and delete them through
    actions that reach the cluster (tests/test_walkthrough.py), never by editing rows."""

    basename = "workload"
    model = Workload
    read_only = True

    def test_viewer_may_read_but_not_change(self, world):
        obj = self.ours(world)
        client = world.client(world.viewer)
        assert client.get(self.detail_url(obj)).status_code == 200
        assert client.patch(self.detail_url(obj), {}, format="json").status_code == 405
        assert client.delete(self.detail_url(obj)).status_code == 403
        assert client.post(f"{self.detail_url(obj)}scale/", {"replicas": 2}, format="json").status_code == 403
        body = {"cluster": world.cluster.pk, "namespace": world.namespace.name, "name": "x", "image": "nginx"}
        assert client.post(self.list_url(), body, format="json").status_code == 403
        assert Workload.objects.filter(pk=obj.pk).exists()

    def make(self, world, cluster, project, namespace, i):
        return Workload.objects.create(
            cluster=cluster, namespace=namespace, uid=f"wl-{cluster.pk}-{i}", name=f"web-{i}", kind="deployment",
            desired_replicas=3, ready_replicas=3, images=["nginx:1.27"],
        )


class TestPods(APIViewTests):
    basename = "pod"
    model = Pod
    read_only = True

    def make(self, world, cluster, project, namespace, i):
        return Pod.objects.create(
            cluster=cluster, namespace=namespace, uid=f"pod-{cluster.pk}-{i}", name=f"web-{i}", phase="Running",
            images=["nginx:1.27"], node_name="worker-0",
        )


class TestServices(APIViewTests):
    basename = "service"
    model = Service
    read_only = True

    def make(self, world, cluster, project, namespace, i):
        return Service.objects.create(cluster=cluster, namespace=namespace, uid=f"svc-{cluster.pk}-{i}", name=f"web-{i}", type="ClusterIP")


class TestClusterEvents(APIViewTests):
    basename = "clusterevent"
    model = ClusterEvent
    read_only = True

    def make(self, world, cluster, project, namespace, i):
        return ClusterEvent.objects.create(
            cluster=cluster, namespace=namespace, uid=f"ev-{cluster.pk}-{i}", name=f"ev-{i}", type="Warning",
            reason="BackOff", involved_kind="Pod", involved_name=f"web-{i}", last_seen=timezone.now(),
        )


class TestAlerts(APIViewTests):
    basename = "alert"
    model = Alert
    read_only = True

    def make(self, world, cluster, project, namespace, i):
        rule = AlertRule.objects.create(name=f"r-{cluster.pk}-{i}", cluster=cluster, condition="node-not-ready")
        return Alert.objects.create(rule=rule, cluster=cluster, cluster_wide=cluster, target=f"node/worker-{i}")
