"""The dashboard's fleet health and its rows, the page shell (active navigation, favicon, the menu),
the one date format, and the websocket's ping: counted and rendered through the permission engine."""

import datetime
import re

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from clusters.models import Cluster, Node, Workload
from monitoring.models import Alert, AlertRule
from portal.templatetags.corral import when
from tests.live_base import listen


@pytest.fixture
def page(world):
    def get(user, path="/", **params):
        client = Client()
        client.force_login(user)
        response = client.get(path, params)
        return response.status_code, response.content.decode()

    return get


def health(html):
    """The figures of the health strip: {tile id: number}, and the per-state links."""
    figures = dict(re.findall(r'id="health-(\w+)"[^>]*><span class="figure">(\d+)</span>', html))
    states = dict((s, int(n)) for s, n in re.findall(r'\?state=(\w+)" class="state[^"]*">(\d+) ', html))
    return {k: int(v) for k, v in figures.items()}, states


@pytest.fixture
def trouble(world):
    """In cluster A: a node not ready, a workload at 1 of 3 in project P, a firing alert.  In B: the same."""
    for cluster, namespace, tag in ((world.cluster, world.namespace, "a"), (world.other_cluster, world.other_namespace, "b")):
        Node.objects.create(cluster=cluster, uid=f"n-{tag}-1", name=f"{tag}-node-1", ready=False)
        Node.objects.create(cluster=cluster, uid=f"n-{tag}-2", name=f"{tag}-node-2", ready=True)
        Workload.objects.create(cluster=cluster, namespace=namespace, uid=f"w-{tag}", name=f"web-{tag}", kind="deployment",
                                desired_replicas=3, ready_replicas=1)
        Workload.objects.create(cluster=cluster, namespace=namespace, uid=f"w-{tag}-ok", name=f"fine-{tag}", kind="deployment",
                                desired_replicas=2, ready_replicas=2)
        rule = AlertRule.objects.create(name=f"down-{tag}", cluster=cluster, condition="node-not-ready", for_seconds=0)
        Alert.objects.create(rule=rule, cluster=cluster, target=f"node/{tag}-node-1", state="firing")


def test_fleet_health_counts_only_what_the_reader_may_see(world, trouble, page):
    status, html = page(world.admin)
    assert status == 200
    assert health(html) == ({"nodes": 2, "workloads": 2, "alerts": 2}, {"active": 2})

    _, html = page(world.owner)  # cluster A only
    assert health(html) == ({"nodes": 1, "workloads": 1, "alerts": 1}, {"active": 1})

    # Another tenant: no role anywhere, so zeros, and nothing of A's or B's names on the lists.
    _, html = page(world.nobody)
    assert health(html) == ({"nodes": 0, "workloads": 0, "alerts": 0}, {})
    for path, secret in (("/fleet/nodes-not-ready/", "a-node-1"), ("/fleet/workloads-degraded/", "web-a")):
        status, listed = page(world.nobody, path)
        assert status == 200 and secret not in listed and "b-" not in listed.split("<main", 1)[1]
    # A project member sees the workloads of their project, and no nodes.
    _, html = page(world.member)
    assert health(html)[0]["nodes"] == 0 and health(html)[0]["workloads"] == 1


def test_each_count_links_to_the_list_it_counts(world, trouble, page):
    _, nodes = page(world.owner, "/fleet/nodes-not-ready/")
    assert "a-node-1" in nodes and "a-node-2" not in nodes and "b-node-1" not in nodes
    _, workloads = page(world.owner, "/fleet/workloads-degraded/")
    assert "web-a" in workloads and "fine-a" not in workloads and "web-b" not in workloads
    _, alerts = page(world.owner, "/alerts/", state="firing")
    assert "node/a-node-1" in alerts and "node/b-node-1" not in alerts
    world.cluster.set_state("unavailable", error="refused")
    world.cluster.save()
    _, html = page(world.admin, "/", state="unavailable")
    assert "alpha" in html and f'href="/clusters/{world.other_cluster.pk}/"' not in html
    assert "Showing unavailable clusters only" in html


def test_a_row_fragment_is_the_dashboard_row_and_follows_the_engine(world, page):
    Node.objects.create(cluster=world.cluster, uid="n1", name="worker-1", ready=True, cpu_allocatable_m=4000, memory_allocatable_bytes=2**30)
    _, dashboard = page(world.owner)
    status, row = page(world.owner, f"/clusters/{world.cluster.pk}/row/")
    assert status == 200
    assert row.strip() in dashboard  # the same template, byte for byte
    assert f'href="/clusters/{world.cluster.pk}/remove/"' in row and "/sync/" in row  # the owner may
    _, viewer_row = page(world.viewer, f"/clusters/{world.cluster.pk}/row/")
    assert "/remove/" not in viewer_row and "/sync/" not in viewer_row and "1 / 1" in viewer_row
    assert page(world.stranger, f"/clusters/{world.cluster.pk}/row/")[0] == 404
    assert page(world.nobody, "/fleet/health/")[1].count('class="figure">0<') == 4


def test_the_navigation_marks_where_the_reader_is(world, page):
    _, html = page(world.owner, "/projects/")
    assert re.search(r'<a href="/projects/" class="active" aria-current="page">Projects</a>', html)
    assert html.count('aria-current="page"') == 1
    _, html = page(world.owner)
    assert '<a href="/" class="active" aria-current="page">Clusters</a>' in html
    assert 'id="log-out"' in html and 'id="menu-toggle"' in html
    assert 'rel="icon"' in html and "favicon" in html


def test_the_favicon_is_served(world):
    answer = Client().get("/favicon.ico")
    assert answer.status_code == 302 and answer["Location"].endswith(".svg")


def test_one_date_format(settings):
    now = timezone.now()
    html = str(when(now - datetime.timedelta(minutes=5, seconds=3)))
    assert re.fullmatch(r'<time class="when" datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+">5\xa0minutes ago</time>', html), html
    assert ">just now<" in str(when(now))
    assert ">in 2\xa0days<" in str(when(now + datetime.timedelta(days=2, minutes=1)))
    assert when(None) == "never" and when(None, "") == ""
    iso = (now - datetime.timedelta(hours=3, minutes=1)).isoformat()
    assert ">3\xa0hours ago<" in str(when(iso))  # an operation log line's ISO time
    assert when("not a time") == "not a time"


@pytest.mark.django_db(transaction=True)
async def test_a_ping_is_answered_through_the_channel_layer():
    from tests.conftest import make_user

    user = await sync_to_async(make_user)("pinger")
    socket = await listen(user, "clusters")
    try:
        await socket.send_json_to({"action": "ping", "id": "42"})
        assert await socket.receive_json_from(timeout=5) == {"type": "pong", "id": "42"}
    finally:
        await socket.disconnect()


def test_every_page_with_a_date_shows_it_one_way(world, trouble, page):
    """Relative words in <time class="when">, the exact time on hover: no other date format on the
    pages that show dates (tokens, members, alerts, projects, operations, users, the dashboard)."""
    from clusters.models import Cluster
    from portal.models import ApiToken, Operation

    ApiToken.issue(world.owner, description="laptop")
    world.project.last_reconciled = timezone.now() - datetime.timedelta(minutes=7)
    world.project.save(update_fields=["last_reconciled"])
    Cluster.objects.filter(pk=world.cluster.pk).update(last_seen=timezone.now())
    world.owner.last_login = timezone.now() - datetime.timedelta(days=3)
    world.owner.save(update_fields=["last_login"])
    op = Operation.objects.create(kind="sync", cluster=world.cluster, created_by=world.owner, status="running",
                                  log=[{"time": (timezone.now() - datetime.timedelta(minutes=2)).isoformat(), "message": "reading"}])
    pages = {
        "/": world.owner, "/account/tokens/": world.owner, f"/clusters/{world.cluster.pk}/members/": world.owner,
        "/alerts/?state=firing": world.owner, f"/projects/{world.project.pk}/": world.owner, f"/operations/{op.pk}/": world.owner,
        f"/manage/users/{world.owner.pk}/": world.admin,
    }
    iso_like = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d")
    for path, user in pages.items():
        status, html = page(user, path)
        assert status == 200, path
        main = html.split("<main", 1)[1].split("</main>", 1)[0]
        assert '<time class="when" datetime="' in main, path
        # Exact times only inside the when element's attributes (datetime=, title=).
        shown = re.sub(r'<time class="when" datetime="[^"]*" title="[^"]*">', "", main)
        assert not iso_like.search(re.sub(r"<[^>]+>", " ", shown)), (path, iso_like.search(shown))


def test_the_dashboard_costs_the_same_queries_for_3_or_12_clusters(world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from clusters.models import ClusterMembership
    from tests.conftest import make_cluster

    client = Client()
    client.force_login(world.owner)

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/").status_code == 200
        return len(captured)

    for i in range(2):
        ClusterMembership.objects.create(cluster=make_cluster(f"few-{i}"), user=world.owner, role="cluster-owner")
    few = queries()
    for i in range(9):
        ClusterMembership.objects.create(cluster=make_cluster(f"many-{i}"), user=world.owner, role="cluster-owner")
    assert queries() == few


def test_the_dashboard_shows_its_clusters_a_page_at_a_time(world):
    """Rendering every row of thousands of clusters takes seconds: the dashboard renders PAGE_SIZE
    of them, with the next pages linked; a page number out of range or not a number is the
    nearest page; a tenant's pages hold only its clusters."""
    from clusters.models import ClusterMembership
    from portal import dashboard
    from tests.conftest import make_cluster

    client = Client()
    client.force_login(world.owner)
    owned = set(Cluster.objects.restrict(world.owner, "view").values_list("name", flat=True))
    for i in range(dashboard.PAGE_SIZE + 3):
        ClusterMembership.objects.create(cluster=make_cluster(f"paged-{i:03d}"), user=world.owner, role="cluster-owner")
    make_cluster("not-theirs")
    seen = []
    for page in (1, 2):
        body = client.get("/", {"page": page}).content.decode()
        seen += re.findall(r'<tr id="cluster-(\d+)"', body)
    total = len(owned) + dashboard.PAGE_SIZE + 3
    assert len(seen) == len(set(seen)) == total
    assert set(Cluster.objects.filter(pk__in=seen).values_list("name", flat=True)) == owned | {f"paged-{i:03d}" for i in range(dashboard.PAGE_SIZE + 3)}
    first = client.get("/").content.decode()
    assert f"Clusters 1–{dashboard.PAGE_SIZE} of {total}" in first and 'rel="next"' in first
    assert re.findall(r'<tr id="cluster-(\d+)"', client.get("/", {"page": "x"}).content.decode()) == seen[:dashboard.PAGE_SIZE]
    assert re.findall(r'<tr id="cluster-(\d+)"', client.get("/", {"page": 99}).content.decode()) == seen[dashboard.PAGE_SIZE:]
