"""Alert rules evaluated against the inventory: each condition, pending to firing, resolving,
project rules, and who sees and handles which alert (the one permission engine)."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from clusters.models import ClusterEvent, Namespace, Node, Pod, Workload
from monitoring import evaluate
from monitoring.models import Alert, AlertRule
from projects.models import Project, ProjectMembership
from tests.conftest import make_user


def rule(world, condition, **extra):
    extra.setdefault("for_seconds", 0)
    return AlertRule.objects.create(name=condition, cluster=world.cluster, condition=condition, **extra)


def targets(r, state="firing"):
    return sorted(Alert.objects.filter(rule=r, state=state).values_list("target", flat=True))


def test_node_not_ready_is_pending_for_its_duration_then_fires_then_resolves(world):
    r = rule(world, "node-not-ready", for_seconds=60)
    node = Node.objects.create(cluster=world.cluster, uid="n1", name="worker-1", ready=False,
                               conditions=[{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."}])
    now = timezone.now()
    assert evaluate.evaluate_cluster(world.cluster.pk, now=now) == now + timedelta(seconds=60)
    alert = Alert.objects.get(rule=r)
    assert alert.state == "pending" and alert.target == "node/worker-1" and alert.cluster_wide_id == world.cluster.pk
    evaluate.evaluate_cluster(world.cluster.pk, now=now + timedelta(seconds=61))
    alert.refresh_from_db()
    assert alert.state == "firing" and alert.fired and alert.labels == {"node": "worker-1"}
    assert "NodeStatusUnknown" in alert.message and alert.severity == "warning"
    node.ready = True
    node.save()
    evaluate.evaluate_cluster(world.cluster.pk, now=now + timedelta(seconds=90))
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.resolved


def test_a_pending_alert_that_clears_before_its_duration_never_fires(world):
    r = rule(world, "node-not-ready", for_seconds=60)
    node = Node.objects.create(cluster=world.cluster, uid="n1", name="worker-1", ready=False)
    evaluate.evaluate_cluster(world.cluster.pk)
    node.ready = True
    node.save()
    evaluate.evaluate_cluster(world.cluster.pk)
    assert not Alert.objects.filter(rule=r).exists()


def test_pod_and_workload_conditions(world):
    ns = world.namespace
    web = Workload.objects.create(cluster=world.cluster, namespace=ns, uid="w1", name="web", kind="deployment", desired_replicas=4,
                                  available_replicas=1, labels={"app": "web"})
    Workload.objects.create(cluster=world.cluster, namespace=ns, uid="w2", name="api", kind="deployment", desired_replicas=2, available_replicas=2)
    Pod.objects.create(cluster=world.cluster, namespace=ns, uid="p1", name="web-1", workload=web, phase="Running", restarts=7, node_name="n1")
    Pod.objects.create(cluster=world.cluster, namespace=ns, uid="p2", name="web-2", workload=web, phase="Pending", node_name="")
    Pod.objects.create(cluster=world.cluster, namespace=ns, uid="p3", name="web-3", workload=web, phase="Failed", node_name="n1")
    Pod.objects.create(cluster=world.cluster, namespace=world.namespace, uid="p4", name="job-1", phase="Succeeded")
    not_running, unscheduled = rule(world, "pod-not-running"), rule(world, "pod-not-scheduled")
    restarts, unavailable = rule(world, "pod-restarts", threshold=5), rule(world, "workload-unavailable", threshold=50)
    selected = rule(world, "pod-not-running", selector={"namespace": "elsewhere"})
    evaluate.evaluate_cluster(world.cluster.pk)
    assert targets(not_running) == ["pod/web-prod/web-2", "pod/web-prod/web-3"]
    assert targets(unscheduled) == ["pod/web-prod/web-2"]
    assert targets(restarts) == ["pod/web-prod/web-1"] and Alert.objects.get(rule=restarts).value == 7
    assert targets(unavailable) == ["deployment/web-prod/web"]
    assert "1 of 4 replicas" in Alert.objects.get(rule=unavailable).message
    assert targets(selected) == []
    # About a project's namespace: the alert belongs to the project, not to the whole cluster.
    alert = Alert.objects.get(rule=unscheduled)
    assert alert.project_id == world.project.pk and alert.cluster_wide_id is None


def test_requested_cpu_and_warning_events(world):
    node = Node.objects.create(cluster=world.cluster, uid="n1", name="worker-1", ready=True, cpu_allocatable_m=1000,
                               memory_allocatable_bytes=1000)
    Pod.objects.create(cluster=world.cluster, namespace=world.namespace, uid="p1", name="big", node=node, node_name="worker-1",
                       phase="Running", cpu_request_m=900)
    ClusterEvent.objects.create(cluster=world.cluster, namespace=world.namespace, uid="e1", name="e1", type="Warning", reason="BackOff",
                                involved_kind="Pod", involved_name="big", message="Back-off restarting", last_seen=timezone.now())
    ClusterEvent.objects.create(cluster=world.cluster, namespace=world.namespace, uid="e2", name="e2", type="Warning", reason="Old",
                                involved_kind="Pod", involved_name="big", last_seen=timezone.now() - timedelta(hours=2))
    cpu, memory = rule(world, "cpu-requested-percent", threshold=80), rule(world, "memory-requested-percent", threshold=80)
    events = rule(world, "warning-event", selector={"reason": "BackOff"})
    evaluate.evaluate_cluster(world.cluster.pk)
    assert targets(cpu) == ["node/worker-1"] and Alert.objects.get(rule=cpu).value == 90.0
    assert targets(memory) == []
    assert targets(events) == ["event/web-prod/Pod/big/BackOff"]


def test_cluster_unavailable(world):
    r = rule(world, "cluster-unavailable")
    world.cluster.state, world.cluster.last_error = "unavailable", "connection refused"
    world.cluster.save()
    evaluate.evaluate_cluster(world.cluster.pk)
    assert targets(r) == ["cluster/alpha"] and "connection refused" in Alert.objects.get(rule=r).message


def test_a_project_rule_sees_only_its_projects_namespaces(world):
    other_ns = Namespace.objects.create(cluster=world.cluster, uid="ns-x", name="not-in-project")
    Pod.objects.create(cluster=world.cluster, namespace=world.namespace, uid="p1", name="mine", phase="Pending")
    Pod.objects.create(cluster=world.cluster, namespace=other_ns, uid="p2", name="theirs", phase="Pending")
    r = AlertRule.objects.create(name="p", cluster=world.cluster, project=world.project, condition="pod-not-running", for_seconds=0)
    evaluate.evaluate_cluster(world.cluster.pk)
    assert targets(r) == ["pod/web-prod/mine"]


@pytest.fixture
def two_projects(world):
    """Project web (world.project, member: world.member) and project api in the same cluster, each
    with a project owner, each with a firing alert about one of its pods; and a node alert."""
    api = Project.objects.create(cluster=world.cluster, name="api")
    api_ns = Namespace.objects.create(cluster=world.cluster, uid="ns-api", name="api-prod", project=api)
    web_owner, api_owner = make_user("web-owner"), make_user("api-owner")
    ProjectMembership.objects.create(project=world.project, user=web_owner, role="project-owner")
    ProjectMembership.objects.create(project=api, user=api_owner, role="project-owner")
    Pod.objects.create(cluster=world.cluster, namespace=world.namespace, uid="p1", name="web-1", phase="Pending")
    Pod.objects.create(cluster=world.cluster, namespace=api_ns, uid="p2", name="api-1", phase="Pending")
    Node.objects.create(cluster=world.cluster, uid="n1", name="worker-1", ready=False)
    rule(world, "pod-not-running")
    rule(world, "node-not-ready")
    evaluate.evaluate_cluster(world.cluster.pk)
    alerts = {a.target: a for a in Alert.objects.all()}
    return world, api, web_owner, api_owner, alerts


def _seen(client):
    response = client.get("/api/v1/alerts/", {"limit": 1000})
    assert response.status_code == 200
    return sorted(row["target"] for row in response.json()["results"])


def test_project_owners_see_only_their_projects_alerts(two_projects):
    world, api, web_owner, api_owner, alerts = two_projects
    assert _seen(world.client(web_owner)) == ["pod/web-prod/web-1"]
    assert _seen(world.client(api_owner)) == ["pod/api-prod/api-1"]
    assert _seen(world.client(world.owner)) == ["node/worker-1", "pod/api-prod/api-1", "pod/web-prod/web-1"]
    # A cluster member sees the cluster's node alert, not the projects' pods (as with pods).
    assert _seen(world.client(world.viewer)) == ["node/worker-1", "pod/web-prod/web-1"]  # viewer is read-only on web
    assert _seen(world.client(world.stranger)) == [] and _seen(world.client(world.nobody)) == []
    # The other project's alert: not found, for reading and handling alike.
    theirs = alerts["pod/api-prod/api-1"]
    client = world.client(web_owner)
    assert client.get(f"/api/v1/alerts/{theirs.pk}/").status_code == 404
    assert client.post(f"/api/v1/alerts/{theirs.pk}/acknowledge/", {}, format="json").status_code == 404
    assert client.post(f"/api/v1/alerts/{theirs.pk}/silence/", {"duration_seconds": 600, "reason": "x"}, format="json").status_code == 404
    assert world.client(web_owner).get("/api/v1/alerts/", {"project": api.pk}).json()["count"] == 0


def test_acknowledge_and_silence_say_who_and_why(two_projects):
    world, api, web_owner, api_owner, alerts = two_projects
    mine = alerts["pod/web-prod/web-1"]
    response = world.client(web_owner).post(f"/api/v1/alerts/{mine.pk}/acknowledge/", {"comment": "looking"}, format="json")
    assert response.status_code == 200
    assert response.json()["acknowledged_by"] == "web-owner" and response.json()["acknowledge_comment"] == "looking"
    until = (timezone.now() + timedelta(hours=2)).isoformat()
    response = world.client(world.member).post(f"/api/v1/alerts/{mine.pk}/silence/", {"until": until, "reason": "deploying"}, format="json")
    assert response.status_code == 200 and response.json()["silenced"] and response.json()["silence_reason"] == "deploying"
    assert world.client(world.owner).get("/api/v1/alerts/", {"silenced": "true"}).json()["count"] == 1
    assert world.client(world.owner).get("/api/v1/alerts/", {"acknowledged": "true"}).json()["count"] == 1
    # Read-only people see it but may not handle it.
    assert world.client(world.viewer).post(f"/api/v1/alerts/{mine.pk}/unsilence/", {}, format="json").status_code == 403
    response = world.client(world.member).post(f"/api/v1/alerts/{mine.pk}/unsilence/", {}, format="json")
    assert response.status_code == 200 and not response.json()["silenced"]


@pytest.mark.parametrize("body, problem", [
    ({"reason": "x"}, "duration_seconds"),
    ({"duration_seconds": 600, "until": "2099-01-01T00:00:00Z", "reason": "x"}, "duration_seconds"),
    ({"until": "2001-01-01T00:00:00Z", "reason": "x"}, "until"),
    ({"duration_seconds": 10, "reason": "x"}, "duration_seconds"),
    ({"duration_seconds": 600}, "reason"),
    ({"duration_seconds": "600", "reason": "x"}, "duration_seconds"),
])
def test_bad_silences_are_a_400_naming_the_field(two_projects, body, problem):
    world, _, _, _, alerts = two_projects
    response = world.client(world.owner).post(f"/api/v1/alerts/{alerts['node/worker-1'].pk}/silence/", body, format="json")
    assert response.status_code == 400 and problem in response.json(), response.content


def test_project_owners_manage_their_projects_rules_only(world):
    owner = make_user("web-owner")
    ProjectMembership.objects.create(project=world.project, user=owner, role="project-owner")
    client = world.client(owner)
    response = client.post("/api/v1/alert-rules/", {"name": "pods", "project": world.project.pk, "condition": "pod-not-running"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["cluster"] == world.cluster.pk
    # A cluster rule, or another tenant's project: no.
    assert client.post("/api/v1/alert-rules/", {"name": "x", "cluster": world.cluster.pk, "condition": "pod-not-running"},
                       format="json").status_code == 403
    assert client.post("/api/v1/alert-rules/", {"name": "x", "project": world.other_project.pk, "condition": "pod-not-running"},
                       format="json").status_code == 400
    response = client.post("/api/v1/alert-rules/", {"name": "x", "project": world.project.pk, "condition": "node-not-ready"}, format="json")
    assert response.status_code == 400 and "cluster rule" in response.content.decode()
    response = client.post("/api/v1/alert-rules/", {"name": "x", "project": world.project.pk, "condition": "pod-not-running",
                                                    "selector": {"color": "red"}}, format="json")
    assert response.status_code == 400 and "color" in response.json()["selector"][0]


def test_alerts_page_shows_each_reader_their_alerts_and_buttons_only_where_allowed(two_projects, client):
    world, api, web_owner, api_owner, alerts = two_projects
    client.force_login(web_owner)
    page = client.get("/alerts/").content.decode()
    assert "pod/web-prod/web-1" in page and "pod/api-prod/api-1" not in page and "node/worker-1" not in page
    assert f"/api/v1/alerts/{alerts['pod/web-prod/web-1'].pk}/acknowledge/" in page
    client.force_login(world.viewer)  # read-only on web: sees, may not handle
    page = client.get("/alerts/").content.decode()
    assert "pod/web-prod/web-1" in page and "node/worker-1" in page and "/acknowledge/" not in page
    client.force_login(world.stranger)
    page = client.get("/alerts/", {"cluster": str(world.cluster.pk), "state": "all"}).content.decode()
    assert "worker-1" not in page and "web-1" not in page and "No alerts" in page
    client.force_login(world.owner)
    page = client.get("/alerts/", {"severity": "critical"}).content.decode()
    assert "No alerts" in page
    assert client.get("/alerts/", {"cluster": "x" * 50, "state": "nonsense"}).status_code == 200


def test_project_quota_and_kubernetes_end_of_life(world, settings):
    world.project.resource_quota = {"limits.cpu": "4", "pods": "10"}
    world.project.quota_status = {"used": {"limits.cpu": "3500m", "pods": "2"}}
    world.project.save()
    quota = rule(world, "project-quota-percent", threshold=80)
    evaluate.evaluate_cluster(world.cluster.pk)
    alert = Alert.objects.get(rule=quota)
    assert alert.target == "project/web/limits.cpu" and alert.value == 87.5 and alert.project_id == world.project.pk
    assert alert.cluster_wide_id is None  # the project's people and the cluster's owners see it

    eol = rule(world, "kubernetes-version-eol")
    settings.KUBERNETES_EOL = {"1.29": date(2025, 2, 28), "1.36": date(2999, 1, 1)}
    world.cluster.kubernetes_version = "v1.36.3"
    world.cluster.save()
    evaluate.evaluate_cluster(world.cluster.pk)
    assert targets(eol) == []
    for version in ("v1.29.4", "v1.21.0"):  # listed and past; older than every listed release
        world.cluster.kubernetes_version = version
        world.cluster.save()
        evaluate.evaluate_cluster(world.cluster.pk)
        assert targets(eol) == ["cluster/alpha"] and version in Alert.objects.get(rule=eol, state="firing").message
