"""Usage metrics: collected from each cluster's metrics.k8s.io (metrics-server), summed per node,
namespace, workload, project and cluster, kept as raw points for a day and rolled up to 5-minute
and hourly averages for 30 days and a year (``PORTAL_METRICS_*``), pruned by a periodic task.

Sized for 2,000 clusters / 20,000 nodes: a collection writes one row per node, namespace, workload
and project of the cluster (never one per pod or container), in one bulk insert.
"""

import json
import logging
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from kubernetes.client.exceptions import ApiException

from clusters.kube.client import api_client
from clusters.kube.quantity import bytes_ as parse_memory_bytes
from clusters.kube.quantity import millicores as parse_cpu_m
from clusters.models import Cluster, ClusterState, Namespace, Pod
from monitoring.models import ClusterUsageStatus, UsageKind, UsageSample
from portal.events import emit, group_name

log = logging.getLogger(__name__)

NODES = "/apis/metrics.k8s.io/v1beta1/nodes"
PODS = "/apis/metrics.k8s.io/v1beta1/pods"
ROLLUPS = (300, 3600)  # resolutions rolled up from the one below


class NoMetrics(Exception):
    """The cluster does not serve metrics.k8s.io."""


def _get(api, path):
    try:
        response = api.call_api(path, "GET", header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
                                _preload_content=False, _return_http_data_only=True, _request_timeout=api.corral_timeout)
    except ApiException as exc:
        if exc.status in (404, 503):
            raise NoMetrics(f"metrics.k8s.io answered {exc.status}: is metrics-server running?") from None
        raise
    return json.loads(response.data)


def read(cluster):
    """(node usage {name: (cpu_m, bytes)}, pod usage {(namespace, name): (cpu_m, bytes)}) from the cluster."""
    api = api_client(cluster.credentials)
    try:
        nodes = {item["metadata"]["name"]: (parse_cpu_m(item["usage"].get("cpu", "0")), parse_memory_bytes(item["usage"].get("memory", "0")))
                 for item in _get(api, NODES).get("items", [])}
        pods = {}
        for item in _get(api, PODS).get("items", []):
            cpu = sum(parse_cpu_m(c.get("usage", {}).get("cpu", "0")) for c in item.get("containers", []))
            memory = sum(parse_memory_bytes(c.get("usage", {}).get("memory", "0")) for c in item.get("containers", []))
            pods[item["metadata"]["namespace"], item["metadata"]["name"]] = (cpu, memory)
        return nodes, pods
    finally:
        api.close()


def collect(cluster_id, now=None):
    """One collection of the cluster's usage; returns how many points were stored (0 without metrics)."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or cluster.is_swarm or cluster.state not in (ClusterState.ACTIVE, ClusterState.UPDATING):
        return 0
    now = (now or timezone.now()).replace(microsecond=0)
    try:
        nodes, pods = read(cluster)
    except NoMetrics as exc:
        ClusterUsageStatus.objects.update_or_create(cluster=cluster, defaults={"available": False, "checked": now, "error": str(exc)[:500]})
        return 0
    except Exception as exc:
        log.info("cluster %s: usage not collected: %s", cluster_id, exc)
        ClusterUsageStatus.objects.update_or_create(cluster=cluster, defaults={"available": False, "checked": now,
                                                                             "error": f"{type(exc).__name__}: {exc}"[:500]})
        return 0
    namespaces = dict(Namespace.objects.filter(cluster=cluster).values_list("name", "project_id"))
    owners = {(ns, name): (wl_ns, wl_name) for ns, name, wl_ns, wl_name in Pod.objects.filter(cluster=cluster, workload__isnull=False)
              .values_list("namespace__name", "name", "workload__namespace__name", "workload__name")}
    sums = defaultdict(lambda: [0.0, 0.0])
    for (namespace, name), (cpu, memory) in pods.items():
        keys = [(UsageKind.NAMESPACE, namespace)]
        if (namespace, name) in owners:
            keys.append((UsageKind.WORKLOAD, "/".join(owners[namespace, name])))
        if namespaces.get(namespace):
            keys.append((UsageKind.PROJECT, str(namespaces[namespace])))
        for key in keys:
            sums[key][0] += cpu
            sums[key][1] += memory
    for name, (cpu, memory) in nodes.items():
        sums[UsageKind.NODE, name] = [cpu, memory]
    sums[UsageKind.CLUSTER, ""] = [sum(v[0] for v in nodes.values()), sum(v[1] for v in nodes.values())]
    rows = []
    for (kind, name), (cpu, memory) in sums.items():
        project = None
        if kind == UsageKind.PROJECT:
            project = int(name)
        elif kind in (UsageKind.NAMESPACE, UsageKind.WORKLOAD):
            project = namespaces.get(name.split("/")[0])
        rows.append(UsageSample(cluster=cluster, kind=kind, name=name, resolution=0, at=now, cpu_m=cpu, memory_bytes=memory,
                                cluster_wide=cluster if kind in (UsageKind.CLUSTER, UsageKind.NODE) else None, project_id=project))
    with transaction.atomic():
        UsageSample.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)
        ClusterUsageStatus.objects.update_or_create(cluster=cluster, defaults={"available": True, "checked": now, "error": ""})
        # Open charts redraw: the cluster's page hears it if its reader may see the cluster's figures.
        cluster_point = next(r for r in rows if r.kind == UsageKind.CLUSTER)
        emit("usage.collected", {"cluster": cluster.pk, "at": now.isoformat()}, cluster_point, group_name("cluster", cluster.pk))
    return len(rows)


def latest_node_usage(cluster_ids, within=timedelta(minutes=2)):
    """{(cluster id, node name): (cpu_m, bytes)}: each node's newest raw point, if recent."""
    rows = (UsageSample.objects.filter(cluster_id__in=cluster_ids, kind=UsageKind.NODE, resolution=0, at__gte=timezone.now() - within)
            .order_by("cluster_id", "name", "-at").distinct("cluster_id", "name").values_list("cluster_id", "name", "cpu_m", "memory_bytes"))
    return {(c, n): (cpu, memory) for c, n, cpu, memory in rows}


def rollup(now=None):
    """Average each finished bucket of the resolution below into 5-minute and hourly points
    (idempotent: a bucket written again gets the same average).  Returns rows written."""
    now = now or timezone.now()
    written, source = 0, 0
    for resolution in ROLLUPS:
        table = UsageSample._meta.db_table
        # Buckets that ended, over the last two days of the finer points (the rest were rolled up before).
        with connection.cursor() as cursor:
            cursor.execute(
                f"""INSERT INTO "{table}" (cluster_id, kind, name, resolution, at, cpu_m, memory_bytes, samples, cluster_wide_id, project_id)
                SELECT cluster_id, kind, name, %s, to_timestamp(floor(extract(epoch FROM at) / %s) * %s) AS bucket,
                       avg(cpu_m), avg(memory_bytes), count(*), max(cluster_wide_id), max(project_id)
                FROM "{table}"
                WHERE resolution = %s AND at >= %s AND at < to_timestamp(floor(extract(epoch FROM %s::timestamptz) / %s) * %s)
                GROUP BY cluster_id, kind, name, bucket
                ON CONFLICT (cluster_id, kind, name, resolution, at) DO UPDATE
                SET cpu_m = EXCLUDED.cpu_m, memory_bytes = EXCLUDED.memory_bytes, samples = EXCLUDED.samples""",
                [resolution, resolution, resolution, source, now - timedelta(days=2), now, resolution, resolution],
            )
            written += cursor.rowcount
        source = resolution
    return written


def prune(now=None):
    """Drop points past their retention.  Returns how many went."""
    now = now or timezone.now()
    keep = {0: timedelta(days=settings.METRICS_RAW_DAYS), 300: timedelta(days=settings.METRICS_5M_DAYS),
            3600: timedelta(days=settings.METRICS_1H_DAYS)}
    return sum(UsageSample.objects.filter(resolution=resolution, at__lt=now - age)._raw_delete(UsageSample.objects.db)
               for resolution, age in keep.items())


RANGES = {"1h": (timedelta(hours=1), 0), "24h": (timedelta(hours=24), 300), "7d": (timedelta(days=7), 3600),
          "30d": (timedelta(days=30), 3600)}
