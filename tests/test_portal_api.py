from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from clusters.models import Cluster, ClusterMembership
from portal.models import ApiToken, AuditEvent, GlobalRoleBinding, Operation
from projects.models import ProjectMembership


def bearer(secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_me_lists_roles_with_where_they_come_from(world, group):
    world.member.groups.add(group)
    ClusterMembership.objects.create(cluster=world.other_cluster, group=group, role="cluster-member")
    body = world.client(world.member).get("/api/v1/me/").json()
    assert body["username"] == "member"
    assert body["groups"] == ["platform-team"]
    assert body["source"] == "local"
    assert body["is_administrator"] is False
    assert body["roles"]["global"] == [{"role": "standard-user", "via": "default"}]
    assert {"cluster": world.other_cluster.pk, "cluster_name": "bravo", "role": "cluster-member", "via": "group:platform-team"} in body["roles"]["clusters"]
    assert body["roles"]["projects"][0]["role"] == "project-member"


def test_group_binding_grants_access(world, group):
    client = world.client(world.nobody)
    assert client.get(f"/api/v1/clusters/{world.other_cluster.pk}/").status_code == 404
    ProjectMembership.objects.create(project=world.other_project, group=group, role="read-only")
    world.nobody.groups.add(group)
    assert client.get(f"/api/v1/clusters/{world.other_cluster.pk}/").status_code == 200
    assert client.get(f"/api/v1/projects/{world.other_project.pk}/").status_code == 200
    assert client.patch(f"/api/v1/projects/{world.other_project.pk}/", {"description": "x"}, format="json").status_code == 403


def test_global_admin_group_sees_everything(world, group):
    GlobalRoleBinding.objects.create(group=group, role="administrator")
    world.nobody.groups.add(group)
    body = world.client(world.nobody).get("/api/v1/clusters/").json()
    assert body["count"] == 2
    assert world.client(world.nobody).get("/api/v1/me/").json()["is_administrator"] is True


def test_createtoken_prints_a_working_token(world, capsys):
    call_command("createtoken", "owner")
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("crl_")
    response = bearer(secret).get("/api/v1/me/")
    assert response.status_code == 200 and response.json()["username"] == "owner"
    token = ApiToken.objects.get(user=world.owner)
    assert secret.split(".")[1] not in token.key_hash  # only the hash is stored
    assert token.last_used is not None


def test_expired_and_revoked_tokens_get_401(world):
    token, secret = ApiToken.issue(world.owner)
    client = bearer(secret)
    assert client.get("/api/v1/me/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/v1/me/").status_code == 401
    token2, secret2 = ApiToken.issue(world.owner)
    client2 = bearer(secret2)
    assert client2.delete(f"/api/v1/tokens/{token2.pk}/").status_code == 204
    assert client2.get("/api/v1/me/").status_code == 401


def test_token_api_shows_the_token_once_and_limits_lifetime(world):
    client = world.client(world.owner)
    response = client.post("/api/v1/tokens/", {"description": "ci", "expires_in_days": 10, "read_only": True}, format="json")
    assert response.status_code == 201
    secret = response.json()["token"]
    listed = client.get("/api/v1/tokens/").json()["results"]
    assert all("token" not in row for row in listed)
    assert bearer(secret).post("/api/v1/tokens/", {}, format="json").status_code == 403  # read-only token
    response = client.post("/api/v1/tokens/", {"expires_in_days": 365}, format="json")
    assert response.status_code == 400 and "at most 90" in str(response.json())


def test_users_see_only_their_own_tokens(world):
    ApiToken.issue(world.stranger)
    rows = world.client(world.owner).get("/api/v1/tokens/").json()["results"]
    assert {row["id"] for row in rows} == set(ApiToken.objects.filter(user=world.owner).values_list("pk", flat=True))


def test_disabled_user_token_stops_working(world):
    _, secret = ApiToken.issue(world.owner)
    world.owner.is_active = False
    world.owner.save()
    assert bearer(secret).get("/api/v1/me/").status_code == 401


def test_audit_events_are_for_administrators(world):
    world.client(world.owner).patch(f"/api/v1/clusters/{world.cluster.pk}/", {"description": "d"}, format="json")
    assert world.client(world.owner).get("/api/v1/audit-events/").json()["count"] == 0
    rows = world.client(world.admin).get("/api/v1/audit-events/", {"object_type": "clusters.cluster"}).json()["results"]
    assert rows[0]["username"] == "owner" and rows[0]["after"] == {"description": "d"}


def test_credentials_never_reach_the_api_or_the_audit_trail(world):
    world.cluster.credentials = {"server": "https://x", "token": "s3cr3t-token"}
    world.cluster.save()
    client = world.client(world.owner)
    body = client.get(f"/api/v1/clusters/{world.cluster.pk}/").json()
    assert "s3cr3t" not in str(body) and body["has_credentials"] is True
    client.patch(f"/api/v1/clusters/{world.cluster.pk}/", {"description": "d"}, format="json")
    assert "s3cr3t" not in str(list(AuditEvent.objects.values()))


def test_credentials_are_encrypted_at_rest(world):
    from django.db import connection

    world.cluster.credentials = {"token": "s3cr3t-token"}
    world.cluster.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM clusters_cluster WHERE id = %s", [world.cluster.pk])
        raw = cursor.fetchone()[0]
    assert "s3cr3t" not in raw
    world.cluster.refresh_from_db()
    assert world.cluster.credentials == {"token": "s3cr3t-token"}


def test_notifiers_and_global_roles_are_administrators_only(world):
    owner = world.client(world.owner)
    assert owner.post("/api/v1/notifiers/", {"name": "n", "kind": "webhook", "config": {"url": "https://hooks.example.com/x"}}, format="json").status_code == 403
    assert owner.post("/api/v1/global-role-bindings/", {"role": "administrator", "user": "owner"}, format="json").status_code == 403
    admin = world.client(world.admin)
    assert admin.post("/api/v1/global-role-bindings/", {"role": "administrator", "user": "owner"}, format="json").status_code == 201
    assert owner.get("/api/v1/me/").json()["is_administrator"] is True


def test_operations_visible_to_their_starter_and_cluster_owners(world):
    op = Operation.objects.create(kind="provision", cluster=world.cluster, created_by=world.viewer)
    assert world.client(world.viewer).get(f"/api/v1/operations/{op.pk}/").status_code == 200
    assert world.client(world.owner).get(f"/api/v1/operations/{op.pk}/").status_code == 200
    assert world.client(world.stranger).get(f"/api/v1/operations/{op.pk}/").status_code == 404
    response = world.client(world.viewer).post(f"/api/v1/operations/{op.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_creating_a_cluster_makes_the_creator_owner_and_starts_an_operation(world):
    GlobalRoleBinding.objects.create(user=world.nobody, role="clusters-create")
    GlobalRoleBinding.objects.create(user=world.nobody, role="sandbox-use")
    client = world.client(world.nobody)
    response = client.post("/api/v1/clusters/", {"name": "mine", "driver": "sandbox"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "pending" and body["created_by"] == "nobody"
    assert ClusterMembership.objects.filter(cluster_id=body["id"], user=world.nobody, role="cluster-owner").exists()
    op = Operation.objects.get(pk=body["operation"])
    assert op.kind == "provision" and op.status == "pending"


def test_schema_and_docs_are_served(world):
    client = world.client(world.owner)
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/clusters/" in schema.content
    client.force_login(world.owner)
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"cdn.jsdelivr.net" not in docs.content  # served by Corral itself, works offline


def test_page_size_is_capped(world, settings):
    settings.API_MAX_PAGE_SIZE = 5
    body = world.client(world.admin).get("/api/v1/clusters/", {"limit": 10000}).json()
    assert "limit=5" in (body["next"] or "limit=5")


def test_counts_past_the_count_limit_say_so_and_every_page_is_still_reached(world, settings):
    from clusters.models import Pod

    settings.API_COUNT_LIMIT = 4
    Pod.objects.bulk_create([Pod(cluster=world.cluster, namespace=world.namespace, uid=f"p{i}", name=f"web-{i}") for i in range(7)])
    client = world.client(world.owner)
    first = client.get("/api/v1/pods/", {"search": "web-", "limit": 2}).json()
    assert first["count"] == 4 and first["count_exact"] is False and "offset=2" in first["next"]
    seen, url = [], "/api/v1/pods/?search=web-&limit=2"
    while url:
        body = client.get(url).json()
        seen += [row["name"] for row in body["results"]]
        assert body["count"] >= len(seen)
        url = body["next"]
    assert sorted(seen) == [f"web-{i}" for i in range(7)]  # past the limit too
    assert body["count"] == 7 and body["count_exact"] is True  # the last page knows
    small = client.get("/api/v1/pods/", {"search": "web-1"}).json()
    assert small["count"] == 1 and small["count_exact"] is True and small["next"] is None
    assert client.get("/api/v1/pods/", {"search": "web-", "limit": 2, "offset": 50}).json()["count"] == 4  # past the end: counted
    other = world.client(world.stranger).get("/api/v1/pods/", {"search": "web-", "limit": 2}).json()
    assert other["count"] == 0 and other["results"] == [] and other["count_exact"] is True  # another tenant: nothing
    for i in range(5):
        Cluster.objects.create(name=f"extra-{i}", driver="sandbox", state="active")
    clusters = world.client(world.admin).get("/api/v1/clusters/", {"limit": 2}).json()
    assert clusters["count"] == 7 and clusters["count_exact"] is True  # the fleet's size is always counted
    settings.API_COUNT_LIMIT = 0
    assert client.get("/api/v1/pods/", {"search": "web-", "limit": 2}).json()["count"] == 7


def test_pod_filters_across_clusters(world):
    from clusters.models import Pod

    Pod.objects.create(cluster=world.cluster, namespace=world.namespace, uid="a", name="web-a", images=["nginx:1.27"], phase="Running", node_name="n1")
    Pod.objects.create(cluster=world.cluster, namespace=world.namespace, uid="b", name="db-b", images=["postgres:16"], phase="Pending", node_name="n2")
    client = world.client(world.admin)

    def names(**params):
        return sorted(row["name"] for row in client.get("/api/v1/pods/", params).json()["results"])

    assert names(search="nginx") == ["web-a"]
    assert names(image="postgres") == ["db-b"]
    assert names(phase="Running") == ["web-a"]
    assert names(node="n2") == ["db-b"]
    assert names(cluster=world.cluster.pk, namespace="web-prod") == ["db-b", "web-a"]
    assert names(cluster=world.other_cluster.pk) == []


def test_a_cluster_can_be_renamed_and_the_name_stays_unique_among_what_one_sees(world):
    client = world.client(world.owner)
    response = client.patch(f"/api/v1/clusters/{world.cluster.pk}/", {"name": "alpha-prod"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "alpha-prod"
    sibling = Cluster.objects.create(name="charlie", driver="sandbox", state="active")
    ClusterMembership.objects.create(cluster=sibling, user=world.owner, role="cluster-member")
    response = client.patch(f"/api/v1/clusters/{world.cluster.pk}/", {"name": "charlie"}, format="json")
    assert response.status_code == 400 and "already have a cluster named 'charlie'" in response.json()["name"][0]
    # Another tenant's cluster name is not the owner's to know about: it is free.
    response = client.patch(f"/api/v1/clusters/{world.cluster.pk}/", {"name": "bravo"}, format="json")
    assert response.status_code == 200, response.content
