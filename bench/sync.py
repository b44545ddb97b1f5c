"""Inventory sync throughput on a large sandbox, Corral's way against the naive way.

    python bench/sync.py                          # 1,000 nodes + 10,000 pods (the issue's size)
    python bench/sync.py --nodes 100 --pods 1000  # quicker
    python bench/sync.py --memory-only            # peak memory of a first sync and a resync only
    python bench/sync.py --sandbox-dir DIR        # use a running, populated sandbox (kept afterwards)

Corral's way (clusters/kube/inventory.py): paginated list calls read as raw JSON, bulk upserts keyed
by (cluster, uid), one transaction.  The naive way, in the same process against the same cluster
and database: the kubernetes client's typed list calls (model objects for every item, unpaginated)
and one update_or_create per row.  Both write the same rows; the figures are objects per second and
the ratio.  Peak memory: each of Corral's syncs also runs on its own in a fresh process, which
reports how far its resident memory rose above where it was after start-up (sampled every 10 ms).
Needs `make kube-tools`; uses a throwaway PostgreSQL database.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchdb


def naive_sync(cluster):
    """The obvious implementation: typed client objects, one save per row."""
    from django.db import transaction
    from kubernetes import client as k8s

    from clusters.kube.client import api_client
    from clusters.kube.quantity import bytes_, millicores
    from clusters.models import ClusterEvent, Namespace, Node, Pod, Service, Workload

    api = api_client(cluster.credentials, timeout=120)
    core, apps, batch = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.BatchV1Api(api)
    t = 300
    namespaces = core.list_namespace(_request_timeout=t).items
    nodes = core.list_node(_request_timeout=t).items
    pods = core.list_pod_for_all_namespaces(_request_timeout=t).items
    services = core.list_service_for_all_namespaces(_request_timeout=t).items
    events = core.list_event_for_all_namespaces(field_selector="type=Warning", _request_timeout=t).items
    deployments = apps.list_deployment_for_all_namespaces(_request_timeout=t).items
    statefulsets = apps.list_stateful_set_for_all_namespaces(_request_timeout=t).items
    daemonsets = apps.list_daemon_set_for_all_namespaces(_request_timeout=t).items
    jobs = batch.list_job_for_all_namespaces(_request_timeout=t).items
    cronjobs = batch.list_cron_job_for_all_namespaces(_request_timeout=t).items
    replicasets = apps.list_replica_set_for_all_namespaces(_request_timeout=t).items
    count = 0
    with transaction.atomic():
        ns_ids = {}
        for ns in namespaces:
            row, _ = Namespace.objects.update_or_create(cluster=cluster, name=ns.metadata.name, defaults={
                "uid": ns.metadata.uid, "labels": ns.metadata.labels or {}, "phase": ns.status.phase or ""})
            ns_ids[ns.metadata.name] = row.pk
            count += 1
        node_ids = {}
        for node in nodes:
            alloc = node.status.allocatable or {}
            ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
            row, _ = Node.objects.update_or_create(cluster=cluster, uid=node.metadata.uid, defaults={
                "name": node.metadata.name, "labels": node.metadata.labels or {}, "ready": ready,
                "kubelet_version": node.status.node_info.kubelet_version, "capacity": node.status.capacity or {},
                "allocatable": alloc, "cpu_allocatable_m": millicores(alloc.get("cpu", 0)),
                "memory_allocatable_bytes": bytes_(alloc.get("memory", 0))})
            node_ids[node.metadata.name] = row.pk
            count += 1
        workload_ids = {}
        for kind, items in (("deployment", deployments), ("statefulset", statefulsets), ("daemonset", daemonsets), ("job", jobs), ("cronjob", cronjobs)):
            for w in items:
                ns = ns_ids[w.metadata.namespace]
                replicas = getattr(w.spec, "replicas", None) or 0
                ready = getattr(w.status, "ready_replicas", None) or 0
                row, _ = Workload.objects.update_or_create(cluster=cluster, uid=w.metadata.uid, defaults={
                    "name": w.metadata.name, "kind": kind, "namespace_id": ns, "labels": w.metadata.labels or {},
                    "desired_replicas": replicas, "ready_replicas": ready})
                workload_ids[(kind, ns, w.metadata.name)] = row.pk
                count += 1
        rs_owner = {(rs.metadata.namespace, rs.metadata.name): rs.metadata.owner_references[0].name
                    for rs in replicasets if rs.metadata.owner_references}
        for pod in pods:
            ns = ns_ids[pod.metadata.namespace]
            owner = (pod.metadata.owner_references or [None])[0]
            workload = None
            if owner is not None and owner.kind == "ReplicaSet":
                workload = workload_ids.get(("deployment", ns, rs_owner.get((pod.metadata.namespace, owner.name))))
            cpu = sum(millicores((c.resources.requests or {}).get("cpu", 0)) for c in pod.spec.containers if c.resources)
            Pod.objects.update_or_create(cluster=cluster, uid=pod.metadata.uid, defaults={
                "name": pod.metadata.name, "namespace_id": ns, "labels": pod.metadata.labels or {},
                "node_name": pod.spec.node_name or "", "node_id": node_ids.get(pod.spec.node_name),
                "workload_id": workload, "phase": pod.status.phase or "", "images": [c.image for c in pod.spec.containers],
                "pod_ip": pod.status.pod_ip or "", "cpu_request_m": cpu})
            count += 1
        for svc in services:
            Service.objects.update_or_create(cluster=cluster, uid=svc.metadata.uid, defaults={
                "name": svc.metadata.name, "namespace_id": ns_ids[svc.metadata.namespace], "type": svc.spec.type or ""})
            count += 1
        for ev in events:
            ClusterEvent.objects.update_or_create(cluster=cluster, uid=ev.metadata.uid, defaults={
                "name": ev.metadata.name, "reason": ev.reason or "", "message": ev.message or "", "type": ev.type or ""})
            count += 1
        seen = {p.metadata.uid for p in pods}
        for stale in Pod.objects.filter(cluster=cluster):
            if stale.uid not in seen:
                stale.delete()
    api.close()
    return count


def populate(sandbox, pods, deployments, ready_replicas):
    """``deployments`` Deployments in namespace "bench" with ``pods`` replicas in all; waits for Ready."""
    api = sandbox.api()
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
    per = pods // deployments
    for index in range(deployments):
        name = f"web-{index}"
        api.create("/apis/apps/v1/namespaces/bench/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": per, "selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}},
        })
    started = time.monotonic()
    while (ready := ready_replicas(sandbox, "bench")) < per * deployments:
        if time.monotonic() - started > 1800:
            raise SystemExit(f"only {ready:,} pods Ready after 30 minutes")
        time.sleep(2)
    print(f"  {per * deployments:,} pods Ready after {time.monotonic() - started:.0f} s", flush=True)


def measured_sync(cluster_id):
    """In a fresh process (``--measure``): one sync, and how far resident memory rose."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from clusters import sync
    from clusters.kube import client, inventory  # noqa: F401 - imported before the baseline

    started = time.perf_counter()
    with benchdb.PeakRSS() as peak:
        counts = sync.sync(cluster_id)
    print(json.dumps({"objects": sum(counts.values()), "seconds": time.perf_counter() - started, "base": peak.base, "peak": peak.max}))


def peak_memory(cluster_id, label):
    result = subprocess.run([sys.executable, __file__, "--measure", str(cluster_id)], capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"the measured sync failed:\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    MiB = 2**20
    print(f"  {label:<20} peak memory {figures['peak'] / MiB:6,.0f} MiB resident, {(figures['peak'] - figures['base']) / MiB:6,.0f} MiB "
          f"above the process before it ({figures['objects']:,} objects in {figures['seconds']:.1f} s)", flush=True)


def memory(creds):
    """A first sync (empty inventory) and a resync, each in a fresh process."""
    from clusters.models import Cluster

    cluster = Cluster.objects.create(name="corral-memory", driver="imported", state="active", credentials=creds)
    peak_memory(cluster.pk, "corral, first sync")
    peak_memory(cluster.pk, "corral, resync")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--deployments", type=int, default=10)
    parser.add_argument("--memory-only", action="store_true", help="only the peak memory of Corral's first sync and resync")
    parser.add_argument("--sandbox-dir", type=Path, help="a running sandbox with its pods (left running)")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measured_sync(args.measure)

    benchdb.setup("corral_bench_sync")
    sandbox_bench = benchdb.load_bench_module("sandbox")
    from clusters import sync
    from clusters.models import Cluster, Pod
    from clusters.sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="corral-bench-sync-") as tmp:
        if args.sandbox_dir:
            sandbox = Sandbox(args.sandbox_dir.name, args.sandbox_dir.parent)
        else:
            sandbox = Sandbox("bench-sync", Path(tmp))
            print(f"starting a sandbox with {args.nodes:,} nodes and {args.pods:,} pods ...", flush=True)
            sandbox.up(nodes=args.nodes, timeout=900)
        try:
            if not args.sandbox_dir:
                populate(sandbox, args.pods, args.deployments, sandbox_bench.ready_replicas)
            creds = {"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem, "client_key": sandbox.admin_key_pem}
            corral = Cluster.objects.create(name="corral-way", driver="imported", state="active", credentials=creds)
            naive = Cluster.objects.create(name="naive-way", driver="imported", state="active", credentials=creds)
            if args.memory_only:
                return memory(creds)

            results = {}
            for label, run in (("corral, first sync", lambda: sum(sync.sync(corral.pk).values())),
                               ("naive, first sync", lambda: naive_sync(naive)),
                               ("corral, resync", lambda: sum(sync.sync(corral.pk).values())),
                               ("naive, resync", lambda: naive_sync(naive))):
                started = time.perf_counter()
                objects = run()
                seconds = time.perf_counter() - started
                results[label] = (objects, seconds)
                print(f"  {label:<20} {objects:>7,} objects in {seconds:6.2f} s = {objects / seconds:>8,.0f} objects/s", flush=True)
            assert Pod.objects.filter(cluster=corral).count() == Pod.objects.filter(cluster=naive).count()
            for kind in ("first sync", "resync"):
                c, n = results[f"corral, {kind}"], results[f"naive, {kind}"]
                print(f"  ratio ({kind}): corral is {(c[0] / c[1]) / (n[0] / n[1]):.1f}x the naive way (target: at least 5x)")
            memory(creds)
        finally:
            if not args.sandbox_dir:
                sandbox.down()


if __name__ == "__main__":
    main()
