"""The Cluster API test ground: a sandbox that is a management cluster (`sandbox up --capi`).

Real Cluster API v1.14 controllers (core, kubeadm bootstrap and control plane, the in-memory
infrastructure provider) run beside a real sandbox control plane; only the machines are simulated,
and each workload cluster's API server is served in memory by the provider (docs/capi.md)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from clusters.sandbox import capi
from tests.waiting import wait_for

pytestmark = pytest.mark.kube

REPO = Path(__file__).resolve().parents[1]
VERSION = "v1.36.3"  # one the ClusterClass offers


def get(sandbox, path):
    return sandbox.api().get(path)


def cluster_manifest(name, namespace, version=VERSION, workers=3):
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Cluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "clusterNetwork": {"services": {"cidrBlocks": ["10.128.0.0/12"]}, "pods": {"cidrBlocks": ["192.168.0.0/16"]},
                               "serviceDomain": "cluster.local"},
            "topology": {
                "classRef": {"name": capi.CLASS_NAME, "namespace": capi.CLASS_NAMESPACE},
                "version": version,
                "controlPlane": {"replicas": 1},
                "workers": {"machineDeployments": [{"class": "default-worker", "name": "md-0", "replicas": workers}]},
                "variables": [{"name": "machineStartupDuration", "value": "1s"}],
            },
        },
    }


def kubectl(sandbox, *args, input=None):
    return sandbox.kubectl(*args, input=input, check=False, timeout=60)


def test_management_sandbox_runs_cluster_api_with_webhooks_and_the_in_memory_class(capi_sandbox):
    status = capi_sandbox.status()["components"]
    for provider in capi.PROVIDERS:
        assert status[f"capi-{provider}"]["alive"], provider
        assert status[f"capi-{provider}"]["rss_bytes"] > 0

    # CRDs from the modules' config/, several versions converted by the local webhook.
    crd = get(capi_sandbox, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusters.cluster.x-k8s.io")
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1beta1", "v1beta2"]
    assert crd["spec"]["conversion"]["webhook"]["clientConfig"]["url"].startswith("https://127.0.0.1:")
    # The contract label the topology controller reads on provider CRDs.
    devmachines = get(capi_sandbox, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/devmachines.infrastructure.cluster.x-k8s.io")
    assert devmachines["metadata"]["labels"]["cluster.x-k8s.io/v1beta2"] == "v1beta2"

    # The class, resolved by the ClusterClass controller: its variable, its versions.
    cc = get(capi_sandbox, f"/apis/cluster.x-k8s.io/v1beta2/namespaces/default/clusterclasses/{capi.CLASS_NAME}")
    assert [v["name"] for v in cc["status"]["variables"]] == ["machineStartupDuration"]
    assert VERSION in cc["spec"]["kubernetesVersions"]

    # The conversion webhook answers: the same ClusterClass read at the older version.
    old = get(capi_sandbox, f"/apis/cluster.x-k8s.io/v1beta1/namespaces/default/clusterclasses/{capi.CLASS_NAME}")
    assert old["apiVersion"] == "cluster.x-k8s.io/v1beta1"
    assert old["spec"]["infrastructure"]["ref"]["kind"] == "DevClusterTemplate"

    # The validating webhook answers: a version the class does not offer is refused.  (A negative
    # replica count is not: CAPI v1.14 accepts it, so a tool driving CAPI must check that itself.)
    name = f"bad-{uuid.uuid4().hex[:6]}"
    refused = kubectl(capi_sandbox, "create", "-f", "-", input=json.dumps(cluster_manifest(name, "default", version="v1.29.0")))
    assert refused.returncode != 0 and "must match one of the versions defined in the ClusterClass" in refused.stderr, refused.stderr


def test_cluster_from_the_class_becomes_available_and_its_kubeconfig_reaches_its_api(capi_sandbox, tmp_path):
    namespace = f"capi-{uuid.uuid4().hex[:6]}"
    capi_sandbox.api().create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    name = "ground"
    applied = kubectl(capi_sandbox, "apply", "-f", "-", input=json.dumps(cluster_manifest(name, namespace)))
    assert applied.returncode == 0, applied.stderr
    base = f"/apis/cluster.x-k8s.io/v1beta2/namespaces/{namespace}"

    def conditions():
        cluster = get(capi_sandbox, f"{base}/clusters/{name}")
        return {c["type"]: c["status"] for c in cluster.get("status", {}).get("conditions", [])}

    def machines():
        items = get(capi_sandbox, f"{base}/machines?labelSelector=cluster.x-k8s.io/cluster-name={name}")["items"]
        return [m.get("status", {}).get("phase") for m in items]

    def progress():
        return f"conditions {conditions()}; machines {machines()}; logs in {capi_sandbox.dir / 'logs'}"

    wait_for(lambda: conditions().get("ControlPlaneAvailable") == "True", 240, "the control plane to be available", progress)
    wait_for(lambda: machines().count("Running") == 4, 240, "1 control-plane and 3 worker machines Running", progress)
    wait_for(lambda: conditions().get("Available") == "True", 120, "the Cluster to be Available", progress)

    # The class variable reached the machines' infrastructure (the ClusterClass patch).
    devmachines = get(capi_sandbox, f"/apis/infrastructure.cluster.x-k8s.io/v1beta2/namespaces/{namespace}/devmachines")["items"]
    assert {m["spec"]["backend"]["inMemory"]["vm"]["provisioning"]["startupDuration"] for m in devmachines} == {"1s"}

    # CAPI's kubeconfig Secret works against the workload cluster's (in-memory) API server.
    secret = get(capi_sandbox, f"/api/v1/namespaces/{namespace}/secrets/{name}-kubeconfig")
    kubeconfig = base64.b64decode(secret["data"]["value"]).decode()
    server = yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]["server"]
    assert server.startswith("https://127.0.0.1:")
    path = tmp_path / "workload.kubeconfig"
    path.write_text(kubeconfig)
    result = subprocess.run([str(capi_sandbox.bin_dir / "kubectl"), f"--kubeconfig={path}", "get", "nodes", "-o", "json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    nodes = json.loads(result.stdout)["items"]
    assert len(nodes) == 4
    assert all(any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]) for n in nodes)
    assert sum("node-role.kubernetes.io/control-plane" in n["metadata"].get("labels", {}) for n in nodes) == 1

    # Deleting the Cluster tears it all down (the machines and the in-memory API server with them).
    kubectl(capi_sandbox, "delete", "cluster", name, "-n", namespace, "--wait=false")
    wait_for(lambda: not get(capi_sandbox, f"{base}/clusters")["items"], 180, "the Cluster to be deleted", progress)
    assert not get(capi_sandbox, f"{base}/machines")["items"]


def test_up_capi_without_cluster_api_built_says_how_to_build_it_and_starts_nothing(tmp_path):
    env = {**os.environ, "CORRAL_CAPI_INMEMORY_BIN": str(tmp_path / "missing"), "CORRAL_SANDBOX_ROOT": str(tmp_path)}
    result = subprocess.run([sys.executable, "manage.py", "sandbox", "up", "nothing", "--capi"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Cluster API is not built (capi-inmemory)" in result.stderr and "make kube-tools" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "nothing").exists()
