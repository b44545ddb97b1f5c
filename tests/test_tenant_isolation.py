"""Nothing of one tenant reaches another, whatever the door.

- A probe over the whole OpenAPI schema: for every path with an id and every method, users of
  another tenant get exactly the answer a missing object gets (404), and nothing changes.
- References: naming an object one may not see (a cluster, a project, a notifier, a user) is
  answered exactly like naming one that does not exist.
- Counts: a cluster's summary counts only what the caller may see.
"""

import json
import re

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from clusters.models import ClusterEvent, Namespace, Node, Pod, Service, SwarmObject, Workload
from monitoring.models import Alert, AlertRule, Notification, Notifier
from portal.models import ApiToken, AuditEvent, Operation
from projects.models import Project, ProjectMembership
from tests.conftest import make_user

MISSING = 987654321
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def tenant_a(world):
    """One object of every kind, all in tenant A (cluster alpha, project web)."""
    ns, cluster = world.namespace, world.cluster
    Node.objects.create(cluster=cluster, uid="a-node", name="a-worker", ready=True, cpu_allocatable_m=4000)
    workload = Workload.objects.create(cluster=cluster, namespace=ns, uid="a-wl", name="a-web", kind="deployment")
    Pod.objects.create(cluster=cluster, namespace=ns, uid="a-pod", name="a-web-1", workload=workload, phase="Running")
    Service.objects.create(cluster=cluster, namespace=ns, uid="a-svc", name="a-web", type="ClusterIP")
    SwarmObject.objects.create(cluster=cluster, namespace=ns, uid="a-secret", name="a-db-password", kind="secret")
    ClusterEvent.objects.create(cluster=cluster, namespace=ns, uid="a-ev", name="a-ev", type="Warning", reason="BackOff",
                                last_seen=timezone.now())
    Operation.objects.create(kind="sync", cluster=cluster, created_by=world.owner, log=[{"message": "secret log line"}])
    rule = AlertRule.objects.create(name="a-rule", cluster=cluster, condition="node-not-ready")
    Alert.objects.create(rule=rule, cluster=cluster, target="node/a-worker")
    # A project rule and an alert about the project: its people see them, no other tenant does.
    project_rule = AlertRule.objects.create(name="a-pods", cluster=cluster, project=world.project, condition="pod-not-running")
    Alert.objects.create(rule=project_rule, cluster=cluster, project=world.project, target=f"pod/{ns.name}/a-web-1")
    # Project web's notifier (its owners and the cluster's manage it) and what it sent.
    notifier = Notifier.objects.create(name="a-pager", kind="webhook", cluster=cluster, project=world.project,
                                       config={"url": "https://hooks.example.com/a"})
    Notification.objects.create(notifier=notifier, rule=rule, cluster=cluster, kind="firing", subject="[FIRING:1] a-rule on alpha")
    ApiToken.issue(world.owner, description="a's token")
    AuditEvent.objects.create(action="create", object_type="clusters.cluster", object_id=str(cluster.pk), object_repr="alpha")
    return world


def _schema_paths(client):
    schema = client.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    return json.loads(schema.content)["paths"]


def _ids(client, resource):
    response = client.get(f"/api/v1/{resource}/", {"limit": 1000})
    assert response.status_code == 200, (resource, response.content)
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return {row["id"] for row in rows}


def _call(client, method, path):
    if method in ("post", "put", "patch"):
        return getattr(client, method)(path, {}, format="json")
    return getattr(client, method)(path)


@pytest.mark.parametrize("prober", ["stranger", "nobody", "member_of_b"])
def test_another_tenant_gets_not_found_on_every_path_and_method_of_the_schema(tenant_a, prober):
    world = tenant_a
    if prober == "member_of_b":
        user = make_user("member-of-b", is_staff=True)
        ProjectMembership.objects.create(project=world.other_project, user=user, role="project-owner")
    else:
        user = getattr(world, prober)
    admin, them = world.client(world.admin), world.client(user)
    paths = _schema_paths(admin)
    detail_paths = [p for p in paths if "{id}" in p]
    assert len(detail_paths) >= 20, "the schema should document the detail routes"

    probed = set()
    audit_before = AuditEvent.objects.count()
    for template in detail_paths:
        resource = re.match(r"^/api/v1/([^/]+)/\{id\}/", template).group(1)
        theirs = _ids(admin, resource) - _ids(them, resource)
        assert theirs, f"tenant A has no {resource} for the probe: add one to the tenant_a fixture"
        for method in METHODS:
            if method not in paths[template]:
                continue
            missing = _call(them, method, template.replace("{id}", str(MISSING)))
            for pk in sorted(theirs)[:3]:
                response = _call(them, method, template.replace("{id}", str(pk)))
                assert response.status_code == 404, (method.upper(), template, pk, response.status_code, response.content)
                assert response.status_code == missing.status_code and response.content == missing.content, (
                    method.upper(), template, "answers differently for an object that exists")
            probed.add((method, template))
    assert AuditEvent.objects.count() == audit_before, "a probe changed something"
    assert Operation.objects.count() == 1 and Project.objects.count() == 2
    assert len(probed) >= 40


def _proxy(path, token, method="GET", headers=()):
    """One request to the Kubernetes API proxy through the real ASGI application."""
    from asgiref.sync import async_to_sync
    from channels.testing import HttpCommunicator

    from portal.asgi import application

    communicator = HttpCommunicator(application, method, path, body=b"{}" if method != "GET" else b"",
                                    headers=[(b"authorization", f"Bearer {token}".encode()), *headers])
    response = async_to_sync(communicator.get_response)(timeout=10)
    return response["status"], response["body"]


def _proxy_websocket(path, token):
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from portal.asgi import application

    async def attempt():
        communicator = WebsocketCommunicator(application, path, headers=[(b"authorization", f"Bearer {token}".encode())],
                                             subprotocols=["v5.channel.k8s.io"])
        connected, code = await communicator.connect(timeout=10)
        await communicator.disconnect()
        return connected, code

    return async_to_sync(attempt)()


@pytest.mark.parametrize("prober", ["stranger", "nobody", "member_of_b"])
def test_another_tenant_gets_not_found_from_the_kubernetes_proxy_before_anything_is_forwarded(tenant_a, prober):
    """/k8s/ is outside the OpenAPI schema: probed here on its own, every method, HTTP and
    websocket (exec).  Tenant A's cluster has an API server address nobody could reach, so a
    request that got forwarded would answer 503, not 404."""
    world = tenant_a
    if prober == "member_of_b":
        user = make_user("member-of-b", is_staff=True)
        ProjectMembership.objects.create(project=world.other_project, user=user, role="project-owner")
    else:
        user = getattr(world, prober)
    world.cluster.credentials = {"server": "https://192.0.2.1:6443", "token": "a-cluster-secret"}
    world.cluster.save()
    _, secret = ApiToken.issue(user)
    audit_before = AuditEvent.objects.count()
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        for rest in ("/api", "/api/v1/namespaces/web-prod/pods", "/apis/apps/v1/namespaces/web-prod/deployments/a-web", "/version"):
            theirs = _proxy(f"/k8s/clusters/{world.cluster.pk}{rest}", secret, method)
            missing = _proxy(f"/k8s/clusters/{MISSING}{rest}", secret, method)
            assert theirs[0] == 404, (method, rest, theirs)
            assert theirs[1].replace(f"id {world.cluster.pk}".encode(), b"ID") == missing[1].replace(f"id {MISSING}".encode(), b"ID")
    connected, _ = _proxy_websocket(f"/k8s/clusters/{world.cluster.pk}/api/v1/namespaces/web-prod/pods/a-web-1/exec?command=id&stdout=1", secret)
    assert not connected
    assert AuditEvent.objects.count() == audit_before, "nothing was forwarded, so nothing was audited"
    # The same user's own cluster (tenant B) is reached: their token works, the door is not just shut.
    if prober == "stranger":
        assert _proxy(f"/k8s/clusters/{world.other_cluster.pk}/version", secret)[0] == 503  # no credentials stored: not forwarded, said so


def test_a_kubeconfig_names_only_the_clusters_one_may_see(tenant_a):
    world = tenant_a
    for user, expected in ((world.admin, {world.cluster.slug, world.other_cluster.slug}), (world.member, {world.cluster.slug}),
                           (world.stranger, {world.other_cluster.slug}), (world.nobody, set())):
        response = world.client(user).get("/api/v1/kubeconfig/")
        assert response.status_code == 200
        assert {c["name"] for c in response.json()["clusters"]} == expected
    assert world.client(world.stranger).get(f"/api/v1/clusters/{world.cluster.pk}/kubeconfig/").status_code == 404


def _same_error(first, second, replace):
    """Two error answers that differ only in the id named."""
    assert first.status_code == second.status_code == 400, (first.content, second.content)
    assert first.content.decode().replace(str(replace[0]), "ID") == second.content.decode().replace(str(replace[1]), "ID")


def test_a_cluster_one_may_not_see_is_answered_like_a_missing_one(world):
    client = world.client(world.owner)
    hidden = client.post("/api/v1/projects/", {"cluster": world.other_cluster.pk, "name": "x"}, format="json")
    missing = client.post("/api/v1/projects/", {"cluster": MISSING, "name": "x"}, format="json")
    _same_error(hidden, missing, (world.other_cluster.pk, MISSING))
    hidden = client.post("/api/v1/cluster-memberships/", {"cluster": world.other_cluster.pk, "user": "viewer"}, format="json")
    missing = client.post("/api/v1/cluster-memberships/", {"cluster": MISSING, "user": "viewer"}, format="json")
    _same_error(hidden, missing, (world.other_cluster.pk, MISSING))
    hidden = client.post("/api/v1/alert-rules/", {"name": "r", "cluster": world.other_cluster.pk, "condition": "node-not-ready"}, format="json")
    missing = client.post("/api/v1/alert-rules/", {"name": "r", "cluster": MISSING, "condition": "node-not-ready"}, format="json")
    _same_error(hidden, missing, (world.other_cluster.pk, MISSING))
    assert not Project.objects.filter(name="x").exists()


def test_a_project_one_may_not_see_is_answered_like_a_missing_one(world):
    client = world.client(world.owner)
    url = f"/api/v1/namespaces/{world.namespace.pk}/"
    hidden = client.patch(url, {"project": world.other_project.pk}, format="json")
    missing = client.patch(url, {"project": MISSING}, format="json")
    _same_error(hidden, missing, (world.other_project.pk, MISSING))
    hidden = client.post("/api/v1/project-memberships/", {"project": world.other_project.pk, "user": "viewer"}, format="json")
    missing = client.post("/api/v1/project-memberships/", {"project": MISSING, "user": "viewer"}, format="json")
    _same_error(hidden, missing, (world.other_project.pk, MISSING))
    world.namespace.refresh_from_db()
    assert world.namespace.project_id == world.project.pk


def test_an_alert_rule_cannot_reference_a_notifier_its_author_may_not_see(world):
    notifier = Notifier.objects.create(name="admins-pager", kind="webhook", config={"url": "https://hooks.example.com/x"})
    client = world.client(world.owner)
    body = {"name": "r", "cluster": world.cluster.pk, "condition": "node-not-ready"}
    hidden = client.post("/api/v1/alert-rules/", {**body, "notifiers": [notifier.pk]}, format="json")
    missing = client.post("/api/v1/alert-rules/", {**body, "notifiers": [MISSING]}, format="json")
    _same_error(hidden, missing, (notifier.pk, MISSING))
    assert not AlertRule.objects.filter(name="r").exists()


def test_usernames_cannot_be_probed_by_someone_who_may_grant_nothing(world):
    client = world.client(world.nobody)
    exists = client.post("/api/v1/cluster-memberships/", {"cluster": world.cluster.pk, "user": "root"}, format="json")
    missing = client.post("/api/v1/cluster-memberships/", {"cluster": world.cluster.pk, "user": "no-such-person"}, format="json")
    _same_error(exists, missing, ("root", "no-such-person"))
    # Someone who may grant roles names people; an unknown name is then a clear error.
    response = world.client(world.owner).post(
        "/api/v1/cluster-memberships/", {"cluster": world.cluster.pk, "user": "no-such-person"}, format="json")
    assert response.status_code == 400 and "no-such-person" in response.content.decode()


def test_a_project_member_sees_counts_of_their_own_project_only(world):
    cluster = world.cluster
    outside = Namespace.objects.create(cluster=cluster, uid="ns-ops", name="ops")  # in no project
    for i in range(3):
        Pod.objects.create(cluster=cluster, namespace=outside, uid=f"ops-{i}", name=f"ops-{i}", phase="Running", cpu_request_m=500)
    Pod.objects.create(cluster=cluster, namespace=world.namespace, uid="web-0", name="web-0", phase="Running", cpu_request_m=100)
    Node.objects.create(cluster=cluster, uid="n-0", name="worker-0", ready=True, cpu_allocatable_m=4000)

    summary = world.client(world.member).get(f"/api/v1/clusters/{cluster.pk}/").json()["summary"]
    assert summary["pods"] == 1 and summary["cpu_requested_m"] == 100
    assert summary["nodes_total"] == 0  # nodes are the cluster's members' to see
    summary = world.client(world.owner).get(f"/api/v1/clusters/{cluster.pk}/").json()["summary"]
    assert summary["pods"] == 4 and summary["cpu_requested_m"] == 1600 and summary["nodes_total"] == 1


def test_the_cluster_list_counts_each_clusters_figures_in_a_flat_number_of_queries(world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from clusters.models import Cluster, ClusterMembership
    from tests.conftest import make_cluster

    def fill(cluster, pods, nodes):
        namespace = Namespace.objects.create(cluster=cluster, uid=f"ns-{cluster.pk}", name="ops")
        Pod.objects.bulk_create([Pod(cluster=cluster, namespace=namespace, uid=f"{cluster.pk}-{i}", name=f"p-{i}", cpu_request_m=10,
                                     phase="Succeeded" if i == 0 else "Running") for i in range(pods)])
        Node.objects.bulk_create([Node(cluster=cluster, uid=f"{cluster.pk}-n{i}", name=f"n-{i}", ready=i > 0, cpu_allocatable_m=1000)
                                  for i in range(nodes)])

    def listed(user):
        response = world.client(user).get("/api/v1/clusters/", {"limit": 100})
        assert response.status_code == 200
        return {row["name"]: row["summary"] for row in response.json()["results"]}

    mine, queries = [], []
    for count in (2, 20):  # the queries do not grow with the clusters listed
        while len(mine) < count:
            cluster = make_cluster(f"fleet-{len(mine)}")
            ClusterMembership.objects.create(cluster=cluster, user=world.owner, role="cluster-owner")
            fill(cluster, pods=len(mine) + 1, nodes=2)
            mine.append(cluster)
        with CaptureQueriesContext(connection) as captured:
            shown = listed(world.owner)
        queries.append(len(captured))
        for i, cluster in enumerate(mine):
            figures = shown[cluster.name]
            assert figures["pods"] == i + 1 and figures["cpu_requested_m"] == 10 * i  # the Succeeded pod requests nothing
            assert figures["nodes_total"] == 2 and figures["nodes_ready"] == 1 and figures["cpu_allocatable_m"] == 2000
    assert queries[0] == queries[1], queries
    fill(world.other_cluster, pods=5, nodes=1)
    assert shown["alpha"]["pods"] == 0 and "bravo" not in shown  # the other tenant's cluster: not listed, not counted
    stranger = listed(world.stranger)
    assert set(stranger) == {"bravo"} and stranger["bravo"]["pods"] == 5
    assert listed(world.member)["alpha"]["nodes_total"] == 0  # a project member: the cluster, none of its nodes
    assert Cluster.objects.with_summary(world.stranger).get(pk=mine[3].pk).pods_total == 0  # asked for directly


def test_the_dashboard_counts_only_what_the_user_may_see(world):
    from django.test import Client

    cluster = world.cluster
    outside = Namespace.objects.create(cluster=cluster, uid="ns-ops", name="ops")
    for i in range(7):
        Pod.objects.create(cluster=cluster, namespace=outside, uid=f"ops-{i}", name=f"ops-{i}", phase="Running")
    client = Client()
    client.force_login(world.member)
    page = client.get("/").content.decode()
    assert "alpha" in page
    clusters = page.split("alpha", 1)[1]
    assert ">7<" not in clusters


def _portal_patterns():
    """(route, name) of every portal page that takes an object id (the admin and the API have
    their own probes)."""
    from django.urls import URLPattern, URLResolver, get_resolver

    found = []

    def walk(patterns, prefix):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                if not route.startswith(("admin/", "api/")):
                    walk(p.url_patterns, route)
            elif isinstance(p, URLPattern) and "<int:pk>" in route:
                found.append((route, p.name))

    walk(get_resolver().url_patterns, "")
    return found


def test_another_tenant_gets_not_found_on_every_portal_page_with_an_id(tenant_a):
    from django.test import Client
    from django.urls import reverse

    world = tenant_a
    token = ApiToken.objects.get(description="a's token")
    objects = {
        "portal-cluster": world.cluster,
        "portal-cluster-remove": world.cluster,
        "portal-cluster-row": world.cluster,
        "portal-cluster-members": world.cluster,
        "manage-user": world.owner,
        "manage-group": Group.objects.get_or_create(name="a-team")[0],
        "manage-group-delete": Group.objects.get_or_create(name="a-team")[0],
        "portal-operation": Operation.objects.get(cluster=world.cluster),
        "portal-project": world.project,
        "account-token-revoke": token,
        "portal-cluster-kubeconfig": world.cluster,
        "portal-pod-logs": Pod.objects.get(uid="a-pod"),
        "portal-pod-shell": Pod.objects.get(uid="a-pod"),
        "portal-pod-yaml": Pod.objects.get(uid="a-pod"),
        "portal-workload-yaml": Workload.objects.get(uid="a-wl"),
        "portal-service-yaml": Service.objects.get(uid="a-svc"),
        # The inventory pages and their live rows (issue 13).
        "portal-namespace": world.namespace,
        "portal-workload": Workload.objects.get(uid="a-wl"),
        "portal-pod": Pod.objects.get(uid="a-pod"),
        "portal-node": Node.objects.get(uid="a-node"),
        "portal-service": Service.objects.get(uid="a-svc"),
        "portal-row-pod": Pod.objects.get(uid="a-pod"),
        "portal-row-workload": Workload.objects.get(uid="a-wl"),
        "portal-row-node": Node.objects.get(uid="a-node"),
        "portal-row-namespace": world.namespace,
        "portal-row-event": ClusterEvent.objects.get(uid="a-ev"),
        "portal-row-service": Service.objects.get(uid="a-svc"),
        "portal-explore-home": world.cluster,
        "portal-explore": world.cluster,
        "portal-explore-counts": world.cluster,
        "portal-object-yaml": world.cluster,
        # Move to Kubernetes (issue 15): the page finds its source like the others.
        "portal-workload-migration": Workload.objects.get(uid="a-wl"),
        "portal-namespace-migration": world.namespace,
    }
    extra_args = {"portal-explore": ["configmaps"]}
    patterns = _portal_patterns()
    assert patterns
    unknown = [name for _, name in patterns if name not in objects]
    assert not unknown, f"portal pages with an id that the probe does not know: {unknown}; add them here"
    for username in ("stranger", "nobody"):
        client = Client()
        client.force_login(getattr(world, username))
        for _, name in patterns:
            url = reverse(name, args=[objects[name].pk, *extra_args.get(name, [])])
            for method in ("get", "post"):
                response = getattr(client, method)(url)
                missing = getattr(client, method)(reverse(name, args=[MISSING, *extra_args.get(name, [])]))
                # 405 for a method the page does not take, whatever the id; else not found.
                assert response.status_code in (404, 405), (username, method, url, response.status_code)
                assert response.status_code == missing.status_code, (username, method, url)
    token.refresh_from_db()
    assert token.revoked is None


def test_a_cluster_name_taken_by_another_tenant_is_free_to_use(world):
    client = world.client(world.owner)
    response = client.post("/api/v1/clusters/", {"name": "bravo", "driver": "sandbox"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["slug"] == "bravo-2"  # the slug stays unique
    # A name the caller already sees is refused, naming it.
    response = client.post("/api/v1/clusters/", {"name": "alpha", "driver": "sandbox"}, format="json")
    assert response.status_code == 400 and "you already have a cluster named 'alpha'" in response.json()["name"][0]
    response = client.post("/api/v1/clusters/import/", {"name": "alpha", "server": "https://127.0.0.1:1", "token": "t"}, format="json")
    assert response.status_code == 400 and "already have a cluster named" in response.json()["name"][0]
