"""Usage series of a node, a workload and a namespace (what the detail pages chart): the API gives
each reader only the series they may see, and the chart template works on any page with the
reference lines a reader may see."""

from datetime import timedelta

import pytest
from django.template import Context, Template
from django.test import RequestFactory
from django.utils import timezone

from clusters.models import Namespace, Node, Pod, Workload
from monitoring.models import ClusterUsageStatus, UsageSample


def point(cluster, kind, name, cpu, project=None, cluster_wide=False, at=None):
    return UsageSample.objects.create(cluster=cluster, kind=kind, name=name, at=at or timezone.now(), cpu_m=cpu, memory_bytes=cpu * 1000,
                                      project=project, cluster_wide=cluster if cluster_wide else None)


@pytest.fixture
def series(world):
    unassigned = Namespace.objects.create(cluster=world.cluster, uid="ns-free", name="unassigned")
    point(world.cluster, "node", "worker-1", 900, cluster_wide=True)
    point(world.cluster, "namespace", "web-prod", 300, project=world.project)
    point(world.cluster, "workload", "web-prod/web", 200, project=world.project)
    point(world.cluster, "namespace", "unassigned", 100)
    point(world.cluster, "workload", "unassigned/batch", 50)
    point(world.other_cluster, "node", "worker-1", 700, cluster_wide=True)
    point(world.other_cluster, "workload", "batch-prod/job", 70, project=world.other_project)
    return unassigned


CASES = [  # (cluster, kind, name) -> who sees it
    ("cluster", "node", "worker-1", {"owner", "viewer"}),
    ("cluster", "namespace", "web-prod", {"owner", "viewer", "member"}),
    ("cluster", "workload", "web-prod/web", {"owner", "viewer", "member"}),
    ("cluster", "namespace", "unassigned", {"owner"}),
    ("cluster", "workload", "unassigned/batch", {"owner"}),
    ("other_cluster", "node", "worker-1", {"stranger"}),
    ("other_cluster", "workload", "batch-prod/job", {"stranger"}),
]


@pytest.mark.parametrize("cluster, kind, name, readers", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_each_kinds_series_goes_only_to_those_who_may_see_it(world, series, cluster, kind, name, readers):
    cluster = getattr(world, cluster)
    for who in ("owner", "viewer", "member", "stranger", "nobody"):
        response = world.client(getattr(world, who)).get("/api/v1/usage/", {"range": "1h", "cluster": cluster.pk, "kind": kind,
                                                                            "name": name})
        assert response.status_code == 200, response.content
        rows = response.json()["results"]
        if who in readers:
            assert [(r["kind"], r["name"], r["cluster"]) for r in rows] == [(kind, name, cluster.pk)], (who, rows)
        else:
            assert rows == [], (who, rows)


def test_series_of_a_kind_come_in_time_order_at_the_ranges_resolution(world):
    now = timezone.now().replace(microsecond=0)
    for minutes in (50, 30, 10):
        point(world.cluster, "workload", "web-prod/web", minutes, project=world.project, at=now - timedelta(minutes=minutes))
    point(world.cluster, "workload", "web-prod/web", 999, project=world.project, at=now - timedelta(hours=2))  # outside 1 h
    UsageSample.objects.create(cluster=world.cluster, kind="workload", name="web-prod/web", resolution=300, at=now - timedelta(hours=3),
                               cpu_m=1, memory_bytes=1, project=world.project)
    client = world.client(world.member)
    rows = client.get("/api/v1/usage/", {"range": "1h", "cluster": world.cluster.pk, "kind": "workload", "name": "web-prod/web"}).json()["results"]
    assert [r["cpu_m"] for r in rows] == [50, 30, 10]
    rows = client.get("/api/v1/usage/", {"range": "24h", "cluster": world.cluster.pk, "kind": "workload", "name": "web-prod/web"}).json()["results"]
    assert [(r["resolution"], r["cpu_m"]) for r in rows] == [(300, 1)]
    response = client.get("/api/v1/usage/", {"range": "1h", "kind": "pod"})
    assert response.status_code == 400 and "kind" in response.json()


def render(world, user, kind, name, **extra):
    request = RequestFactory().get("/")
    request.user = user
    template = Template('{% include "monitoring/usage_charts.html" with usage_cluster=cluster usage_kind=kind usage_name=name %}')
    return template.render(Context({"request": request, "cluster": world.cluster.pk, "kind": kind, "name": name, **extra}))


def test_the_chart_template_works_for_nodes_workloads_and_namespaces_with_the_lines_a_reader_may_see(world):
    node = Node.objects.create(cluster=world.cluster, uid="n1", name="worker-1", ready=True, cpu_allocatable_m=4000,
                               memory_allocatable_bytes=8 * 2**30)
    web = Workload.objects.create(cluster=world.cluster, namespace=world.namespace, uid="w1", name="web", kind="deployment")
    for i, phase in enumerate(["Running", "Running", "Succeeded"]):
        Pod.objects.create(cluster=world.cluster, namespace=world.namespace, workload=web, node=node, node_name="worker-1", uid=f"p{i}",
                           name=f"web-{i}", phase=phase, cpu_request_m=250, memory_request_bytes=2**28)
    assert "No usage metrics" in render(world, world.owner, "node", "worker-1")  # the cluster serves none (yet)
    ClusterUsageStatus.objects.create(cluster=world.cluster, available=True)

    page = render(world, world.viewer, "node", "worker-1")  # a cluster member sees nodes
    assert 'data-kind="node" data-name="worker-1"' in page and 'data-cpu-allocatable="4000"' in page
    assert 'data-cpu-requested="500"' in page and f'data-memory-requested="{2 * 2**28}"' in page  # the finished pod holds none
    assert "portal/usage.js" in page and "uPlot.iife.min.js" in page  # self-contained on any page
    page = render(world, world.member, "node", "worker-1")  # a project member does not see nodes: no figures of one
    assert 'data-cpu-allocatable=""' in page and 'data-cpu-requested=""' in page

    page = render(world, world.member, "workload", "web-prod/web")
    assert 'data-kind="workload" data-name="web-prod/web"' in page and 'data-cpu-requested="500"' in page
    page = render(world, world.member, "namespace", "web-prod")
    assert 'data-cpu-requested="500"' in page and 'data-cpu-allocatable=""' in page
    page = render(world, world.stranger, "namespace", "web-prod")  # another tenant: nothing of their pods
    assert 'data-cpu-requested="0"' in page
    # What the including page passes wins (e.g. a namespace's quota as its limit).
    page = render(world, world.member, "namespace", "web-prod", cpu_limit=2000)
    assert 'data-cpu-limit="2000"' in page
