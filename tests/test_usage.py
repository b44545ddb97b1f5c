"""Usage metrics: collected from a sandbox's metrics.k8s.io (metrics-server over kwok's simulated
kubelets), rolled up and pruned, shown only to those who may see what they are about, and a pod
set to high CPU through kwok's annotation fires the node CPU usage rule."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from clusters import sync
from clusters.models import Cluster, ClusterMembership
from monitoring import evaluate, usage
from monitoring.models import Alert, AlertRule, ClusterUsageStatus, UsageSample
from tests.kube_fixtures import require_kube_addon


def point(world, kind, name, at, cpu, resolution=0, project=None, cluster_wide=False):
    return UsageSample.objects.create(cluster=world.cluster, kind=kind, name=name, at=at, cpu_m=cpu, memory_bytes=cpu * 1000,
                                      resolution=resolution, project=project, cluster_wide=world.cluster if cluster_wide else None)


def test_rollups_average_finished_buckets_and_pruning_keeps_each_resolution_its_time(world, settings):
    base = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    for i in range(20):  # 10 minutes of raw points every 30 s: two 5-minute buckets
        point(world, "node", "worker-1", base + timedelta(seconds=30 * i), cpu=100 + (i // 10) * 100, cluster_wide=True)
    usage.rollup()
    five = list(UsageSample.objects.filter(resolution=300).order_by("at").values_list("at", "cpu_m", "samples"))
    assert five == [(base, 100.0, 10), (base + timedelta(minutes=5), 200.0, 10)]
    hourly = list(UsageSample.objects.filter(resolution=3600).values_list("at", "cpu_m", "samples"))
    assert hourly == [(base, 150.0, 2)]
    usage.rollup()  # again: the same averages, nothing doubled
    assert UsageSample.objects.filter(resolution=300).count() == 2
    assert UsageSample.objects.get(resolution=3600).cpu_m == 150.0
    # Pruned by age per resolution: raw after a day, 5-minute after 30 days, hourly after a year.
    usage.prune(now=timezone.now() + timedelta(days=2))
    assert not UsageSample.objects.filter(resolution=0).exists() and UsageSample.objects.filter(resolution=300).count() == 2
    usage.prune(now=timezone.now() + timedelta(days=31))
    assert set(UsageSample.objects.values_list("resolution", flat=True)) == {3600}
    usage.prune(now=timezone.now() + timedelta(days=366))
    assert not UsageSample.objects.exists()


def test_usage_api_shows_each_reader_only_what_they_may_see(world):
    now = timezone.now()
    point(world, "node", "worker-1", now, 500, cluster_wide=True)
    point(world, "cluster", "", now, 500, cluster_wide=True)
    point(world, "namespace", "web-prod", now, 300, project=world.project)
    point(world, "project", str(world.project.pk), now, 300, project=world.project)
    point(world, "namespace", "unassigned", now, 200)

    def seen(user, **params):
        response = world.client(user).get("/api/v1/usage/", {"range": "1h", **params})
        assert response.status_code == 200, response.content
        return sorted((row["kind"], row["name"]) for row in response.json()["results"])

    assert seen(world.owner) == [("cluster", ""), ("namespace", "unassigned"), ("namespace", "web-prod"), ("node", "worker-1"),
                                 ("project", str(world.project.pk))]
    assert seen(world.viewer) == [("cluster", ""), ("namespace", "web-prod"), ("node", "worker-1"), ("project", str(world.project.pk))]
    assert seen(world.member) == [("namespace", "web-prod"), ("project", str(world.project.pk))]
    assert seen(world.stranger) == [] and seen(world.nobody) == []
    assert seen(world.owner, kind="node") == [("node", "worker-1")]
    response = world.client(world.owner).get("/api/v1/usage/")
    assert response.status_code == 400 and "range" in response.json()
    assert world.client(world.owner).get("/api/v1/usage/", {"range": "2y"}).status_code == 400


def test_a_cluster_without_metrics_is_marked_and_still_gets_other_rules(world):
    # The world's clusters have no API server: nothing is collected, the cluster says why.
    world.cluster.credentials = {"server": "https://127.0.0.1:9"}
    world.cluster.save()
    assert usage.collect(world.cluster.pk) == 0
    assert not ClusterUsageStatus.objects.get(cluster=world.cluster).available


@pytest.mark.kube
@pytest.mark.django_db(transaction=True)
def test_a_pod_using_much_cpu_through_kwoks_annotation_fires_the_cpu_usage_rule(sandbox, kubectl):
    require_kube_addon("metrics-server")
    from tests.conftest import make_user

    cluster = Cluster.objects.create(
        name="usage", driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem,
                     "client_key": sandbox.admin_key_pem},
    )
    ClusterMembership.objects.create(cluster=cluster, user=make_user("usage-owner"), role="cluster-owner")
    rule = AlertRule.objects.create(name="hot node", cluster=cluster, condition="cpu-usage-percent", threshold=70, for_seconds=0)
    ns = kubectl.namespace
    kubectl("create", "deployment", "hot", "--image=nginx", "--replicas=1")
    deadline = time.monotonic() + 60
    while "Running" not in kubectl("get", "pods", "-l", "app=hot", "-o", "jsonpath={.items[*].status.phase}"):
        assert time.monotonic() < deadline, "the pod never ran"
        time.sleep(0.5)
    kubectl("annotate", "pods", "-l", "app=hot", "kwok.x-k8s.io/usage-cpu=3500m")
    node = kubectl("get", "pods", "-l", "app=hot", "-o", "jsonpath={.items[0].spec.nodeName}")
    sync.sync(cluster.pk)
    deadline = time.monotonic() + 150
    while True:  # metrics-server scrapes every 10 s and needs two scrapes for a CPU rate
        usage.collect(cluster.pk)
        hot = UsageSample.objects.filter(cluster=cluster, kind="node", name=node, cpu_m__gte=3000).exists()
        # Pod metrics can come a scrape after the node's (they need the container's start time too).
        if hot and UsageSample.objects.filter(cluster=cluster, kind="workload", name=f"{ns}/hot").exists():
            break
        if time.monotonic() > deadline:
            log = sandbox.log_path("metrics-server")
            pytest.fail(f"no usage of the hot pod: {sorted(set(UsageSample.objects.filter(cluster=cluster).values_list('kind', 'name')))}; "
                        f"kubectl top nodes: {sandbox.kubectl('top', 'nodes', check=False).stdout}"
                        f"{sandbox.kubectl('top', 'nodes', check=False).stderr}; metrics-server log: "
                        f"{log.read_text()[-2000:] if log.exists() else 'none'}")
        time.sleep(3)
    assert ClusterUsageStatus.objects.get(cluster=cluster).available
    workload = UsageSample.objects.filter(cluster=cluster, kind="workload", name=f"{ns}/hot").latest("at")
    assert workload.cpu_m >= 3000 and UsageSample.objects.filter(cluster=cluster, kind="namespace", name=ns).exists()
    evaluate.evaluate_cluster(cluster.pk)
    alert = Alert.objects.get(rule=rule, target=f"node/{node}")
    assert alert.state == "firing" and alert.value >= 78 and "cpu in use" in alert.message


def test_cluster_and_project_pages_chart_usage_or_say_there_is_none(world, client):
    client.force_login(world.owner)
    page = client.get(f"/clusters/{world.cluster.pk}/").content.decode()
    assert "No usage metrics" in page and "vendor/uplot/uPlot.iife.min.js" in page
    ClusterUsageStatus.objects.create(cluster=world.cluster, available=True)
    world.project.resource_quota = {"limits.cpu": "8", "requests.memory": "4Gi"}
    world.project.save()
    page = client.get(f"/clusters/{world.cluster.pk}/").content.decode()
    assert f'data-usage-cluster="{world.cluster.pk}" data-kind="cluster"' in page and "No usage metrics" not in page
    client.force_login(world.member)
    page = client.get(f"/projects/{world.project.pk}/").content.decode()
    assert f'data-kind="project" data-name="{world.project.pk}"' in page
    assert 'data-cpu-limit="8000"' in page and f'data-memory-requested="{4 * 2**30}"' in page
    # The vendored library is one of Corral's own static files (no CDN).
    from django.contrib.staticfiles import finders

    assert finders.find("vendor/uplot/uPlot.iife.min.js") and "https://" not in page.split("<main")[0]
