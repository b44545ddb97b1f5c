"""Watch threads of different kinds race: a pod's event may be written before its Deployment's.
The pod is stored with no workload, and the workload, when it comes, adopts its pods: through its
ReplicaSets (<deployment>-<pod-template-hash>) for a Deployment, by owner name for the others.
Another workload whose name only begins the same never takes them."""

import pytest

from clusters.kube.inventory import RESOURCES, apply_change, write
from clusters.models import Cluster, Pod

pytestmark = pytest.mark.django_db


@pytest.fixture
def cluster():
    cluster = Cluster.objects.create(name="adoption", driver="imported", state="active")
    data = {name: [] for name in RESOURCES}
    data["namespaces"] = [{"metadata": {"name": "ns", "uid": "u-ns", "resourceVersion": "1"}}]
    write(cluster, data)
    return cluster


def pod(name, owner_kind, owner_name, rv, template_hash=None):
    labels = {"pod-template-hash": template_hash} if template_hash else {}
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "resourceVersion": str(rv), "labels": labels,
                         "ownerReferences": [{"kind": owner_kind, "name": owner_name, "controller": True}]},
            "spec": {"nodeName": "", "containers": [{"name": "c", "image": "nginx"}]}, "status": {"phase": "Running"}}


def workload(name, rv):
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "resourceVersion": str(rv)},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}, "status": {}}


def workload_of(cluster, name):
    return Pod.objects.filter(cluster=cluster, name=name).values_list("workload__name", flat=True).get()


def test_a_deployment_that_comes_after_its_pods_adopts_them_and_only_them(cluster):
    apply_change(cluster, "pods", "ADDED", pod("web-5d8f7c-abcde", "ReplicaSet", "web-5d8f7c", 10, "5d8f7c"))
    apply_change(cluster, "pods", "ADDED", pod("web-api-77b9-xyz12", "ReplicaSet", "web-api-77b9", 11, "77b9"))
    assert workload_of(cluster, "web-5d8f7c-abcde") is None

    apply_change(cluster, "deployments", "ADDED", workload("web", 12))
    assert workload_of(cluster, "web-5d8f7c-abcde") == "web"
    assert workload_of(cluster, "web-api-77b9-xyz12") is None  # web-api's, not web's

    apply_change(cluster, "deployments", "ADDED", workload("web-api", 13))
    assert workload_of(cluster, "web-api-77b9-xyz12") == "web-api"


def test_a_statefulset_adopts_its_pods_by_owner_name(cluster):
    apply_change(cluster, "pods", "ADDED", pod("db-0", "StatefulSet", "db", 10))
    apply_change(cluster, "pods", "ADDED", pod("dbx-0", "StatefulSet", "dbx", 11))
    apply_change(cluster, "statefulsets", "ADDED", workload("db", 12))
    assert workload_of(cluster, "db-0") == "db"
    assert workload_of(cluster, "dbx-0") is None
