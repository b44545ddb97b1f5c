"""The Helm chart deploy/helm/corral, with the pinned helm (tools/kube/helm, built by make kube-tools):
`helm lint`, `helm template` validated by a real kube-apiserver (server-side dry run: schemas,
defaults and admission), and `helm install`/`upgrade`/`uninstall` into the sandbox, where kwok
runs the pods: the migration Job completes, every Deployment and the watchers' StatefulSet roll out.

Without the helm binary these tests skip naming `make kube-tools`; with CI=true they fail."""

import base64
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.kube_fixtures import require_kube_addon

pytestmark = pytest.mark.kube

CHART = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "corral"
# Every switch on: what the server-side dry run must accept.
EVERYTHING = ["--set", "ingress.enabled=true", "--set", "ingress.className=nginx",
              "--set", "ingress.tls[0].secretName=corral-tls", "--set", "ingress.tls[0].hosts[0]=corral.example.com",
              "--set", "watcher.replicas=3", "--set", "image.repository=registry.example.com/corral", "--set", "image.tag=1.2.3",
              "--set", "config.ldap.serverUri=ldap://ldap:389", "--set", "config.ldap.bindDn=cn=admin,dc=example,dc=org",
              "--set", "networkPolicy.from[0].namespaceSelector.matchLabels.team=ingress"]


@pytest.fixture(scope="module")
def helm():
    path = require_kube_addon("helm")

    def run(*args, kubeconfig=None, check=True, timeout=300):
        argv = [str(path), *(f"--kubeconfig={kubeconfig}",) * bool(kubeconfig), *map(str, args)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
        return result

    return run


def objects(manifest):
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def test_lint_is_clean_with_defaults_and_every_switch(helm, tmp_path):
    assert "0 chart(s) failed" in helm("lint", "--strict", CHART).stdout
    assert "0 chart(s) failed" in helm("lint", "--strict", CHART, *EVERYTHING, "--set", "existingSecret=mine").stdout


def test_rendered_objects_are_what_the_issue_asks_for(helm):
    rendered = objects(helm("template", "corral", CHART, *EVERYTHING).stdout)
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in rendered)
    assert kinds == sorted([
        "Deployment/corral-web", "Deployment/corral-worker", "Deployment/corral-beat", "StatefulSet/corral-watcher",
        "Service/corral-web", "Service/corral-watcher", "Ingress/corral", "Job/corral-migrate", "Secret/corral",
        "PodDisruptionBudget/corral-web", "PodDisruptionBudget/corral-worker", "PodDisruptionBudget/corral-watcher",
        "NetworkPolicy/corral-web", "NetworkPolicy/corral-background"])
    by_name = {o["metadata"]["name"]: o for o in rendered}
    beat = by_name["corral-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}
    watcher = by_name["corral-watcher"]["spec"]
    assert watcher["replicas"] == 3
    env = {e["name"]: e for e in watcher["template"]["spec"]["containers"][0]["env"]}
    assert env["CORRAL_WATCHER_SHARDS"]["value"] == "3"
    assert env["CORRAL_WATCHER_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    web = by_name["corral-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["image"] == "registry.example.com/corral:1.2.3"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz" and web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for name, component in (("corral-worker", "worker"), ("corral-beat", "beat"), ("corral-watcher", "watcher")):
        probe = by_name[name]["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]["command"]
        assert probe[:5] == ["python", "manage.py", "alive", "--component", component]
    assert by_name["corral-migrate"]["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    for o in rendered:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            pod = o["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, o["metadata"]["name"]
            assert all(c["resources"]["requests"] for c in pod["containers"]), o["metadata"]["name"]


def test_existing_secret_and_bitnami_urls(helm):
    rendered = objects(helm("template", "corral", CHART, "--set", "existingSecret=corral-prod",
                            "--set", "postgresql.enabled=true", "--set", "redis.enabled=true").stdout)
    assert not [o for o in rendered if o["kind"] == "Secret"]  # the chart makes none
    web = next(o for o in rendered if o["metadata"]["name"] == "corral-web" and o["kind"] == "Deployment")
    env = {e["name"]: e for e in web["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PORTAL_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "corral-prod", "key": "secret-key"}
    assert env["CORRAL_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "corral-postgresql", "key": "password"}
    assert env["PORTAL_DATABASE_URL"]["value"] == "postgresql://corral:$(CORRAL_DATABASE_PASSWORD)@corral-postgresql:5432/corral"
    assert env["PORTAL_REDIS_URL"]["value"] == "redis://:$(CORRAL_REDIS_PASSWORD)@corral-redis-master:6379/0"


def test_every_rendered_object_passes_a_server_side_dry_run(helm, kubectl, kube_namespace):
    manifest = helm("template", "corral", CHART, "--namespace", kube_namespace, *EVERYTHING).stdout
    count = len(objects(manifest))
    out = kubectl("apply", "--dry-run=server", "-f", "-", "-o", "name", input=manifest, timeout=120)
    assert len(out.split()) == count, out
    # Validation is real: a wrong field is refused by the same apiserver.
    broken = manifest.replace("maxUnavailable: 1", "maxUnavailable: one", 1)
    refused = kubectl.run("apply", "--dry-run=server", "-f", "-", input=broken, timeout=120)
    assert refused.returncode != 0 and "maxUnavailable" in refused.stderr


def test_install_rolls_out_upgrades_and_uninstalls(helm, sandbox, kubectl, kube_namespace):
    kube = {"kubeconfig": sandbox.kubeconfig_path}
    common = ["--namespace", kube_namespace, "--wait", "--timeout", "4m",
              "--set", "watcher.replicas=2", "--set", "database.url=postgresql://corral:x@db:5432/corral"]
    helm("install", "corral", CHART, *common, **kube)
    status = json.loads(helm("status", "corral", "--namespace", kube_namespace, "-o", "json", **kube).stdout)
    assert status["info"]["status"] == "deployed"
    for workload in ("deployment/corral-web", "deployment/corral-worker", "deployment/corral-beat", "statefulset/corral-watcher"):
        kubectl("rollout", "status", workload, "--timeout=120s", timeout=150)
    deployments = json.loads(kubectl("get", "deployments,statefulsets", "-o", "json"))["items"]
    ready = {d["metadata"]["name"]: (d["status"].get("readyReplicas"), d["spec"]["replicas"]) for d in deployments}
    assert ready == {"corral-web": (2, 2), "corral-worker": (2, 2), "corral-beat": (1, 1), "corral-watcher": (2, 2)}
    names = set(kubectl("get", "pdb,networkpolicy,service,secret", "-o", "name").split())
    assert {"poddisruptionbudget.policy/corral-web", "networkpolicy.networking.k8s.io/corral-background",
            "service/corral-web", "service/corral-watcher", "secret/corral"} <= names
    # The migration Job ran (kwok completed its pod) and was deleted on success (its hook policy).
    assert "job.batch/corral-migrate" not in kubectl("get", "jobs", "-o", "name")
    key = kubectl("get", "secret", "corral", "-o", "jsonpath={.data.secret-key}")
    assert len(base64.b64decode(key)) == 64

    helm("upgrade", "corral", CHART, *common, "--set", "web.replicas=3", **kube)
    kubectl("rollout", "status", "deployment/corral-web", "--timeout=120s", timeout=150)
    assert kubectl("get", "deployment", "corral-web", "-o", "jsonpath={.status.readyReplicas}") == "3"
    assert kubectl("get", "secret", "corral", "-o", "jsonpath={.data.secret-key}") == key  # kept across upgrades

    helm("uninstall", "corral", "--namespace", kube_namespace, "--wait", **kube)
    assert kubectl("get", "deployments,statefulsets", "-o", "name").strip() == ""
    assert "secret/corral" in kubectl("get", "secrets", "-o", "name")  # kept: the data needs its key
