"""Cluster API beside a sandbox: the sandbox becomes a management cluster.

Four upstream controllers, built by `make kube-tools` from sigs.k8s.io/cluster-api v1.14 (tools/kube/capi/),
run as local processes with the sandbox's admin kubeconfig, as the sandbox runs its control plane:

  core                     capi-manager                (Cluster, Machine*, ClusterClass, topology)
  bootstrap-kubeadm        capi-kubeadm-bootstrap      (KubeadmConfig)
  control-plane-kubeadm    capi-kubeadm-control-plane  (KubeadmControlPlane)
  infrastructure-inmemory  capi-inmemory               (DevCluster/DevMachine with the inMemory backend:
                           simulated machines; each workload cluster's API server is served in memory
                           on 127.0.0.1:20000 and up, and a debug server on :19000)

Their CRDs come from the modules' config/ folders (copied into the kube-tools cache), with the
conversion webhooks and the admission webhook configurations pointed at https://127.0.0.1:<port> and a
serving certificate signed by the sandbox's CA.  The ClusterClass `in-memory` (capi/ beside this file)
is applied to the namespace `default`.  State: <sandbox>/capi.json; logs: <sandbox>/logs/capi-*.log.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

import yaml

from . import processes
from .api import APIError
from .binaries import require_capi
from .errors import SandboxError
from .pki import KeyPair
from .ports import free_ports, port_in_use

CLASS_FILE = Path(__file__).with_name("capi") / "clusterclass-in-memory.yaml"
CLASS_NAME = "in-memory"
CLASS_NAMESPACE = "default"
# provider (the folder under the config copy, and the `cluster.x-k8s.io/provider` label) -> binary
PROVIDERS = {
    "core": "capi-manager",
    "bootstrap-kubeadm": "capi-kubeadm-bootstrap",
    "control-plane-kubeadm": "capi-kubeadm-control-plane",
    "infrastructure-inmemory": "capi-inmemory",
}
# The `cluster.x-k8s.io/provider` label on what each provider installs, as upstream's manifests set it.
PROVIDER_LABEL = "cluster.x-k8s.io/provider"
PROVIDER_LABELS = {"core": "cluster-api", "infrastructure-inmemory": "infrastructure-docker"}
FEATURE_GATES = "ClusterTopology=true"  # ClusterClass and managed topologies (alpha, off by default)
# The in-memory provider listens on these fixed ports (upstream gives no flag): one such sandbox at a time.
INMEMORY_DEBUG_PORT = 19000
INMEMORY_PORTS = (20000, 30000)


def state_path(sandbox) -> Path:
    return sandbox.dir / "capi.json"


def _state(sandbox) -> dict | None:
    try:
        return json.loads(state_path(sandbox).read_text())
    except (OSError, ValueError):
        return None


def _save(sandbox, state: dict) -> None:
    tmp = state_path(sandbox).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_path(sandbox))


def _process(entry: dict):
    return processes.process_for(entry.get("pid"), entry["argv"][0], entry.get("start_ticks"), entry.get("started"))


def installed(sandbox) -> bool:
    return _state(sandbox) is not None


def status(sandbox) -> dict:
    """Each controller's pid, liveness and resident memory (empty when the sandbox has no Cluster API)."""
    state = _state(sandbox) or {"components": {}}
    result = {}
    for provider, entry in state["components"].items():
        process = _process(entry)
        result[f"capi-{provider}"] = {
            "pid": entry.get("pid"),
            "alive": process is not None,
            "rss_bytes": processes.rss_bytes([process]) if process else 0,
        }
    return result


def stop(sandbox) -> None:
    """Stop the controllers by pid (the workload clusters the in-memory provider serves go with it)."""
    state = _state(sandbox)
    if state is None:
        return
    failures = []
    for provider, entry in reversed(list(state["components"].items())):
        try:
            processes.stop(entry.get("pid"), entry["argv"][0], entry.get("start_ticks"), started=entry.get("started"))
        except OSError as exc:
            failures.append(str(exc))
            continue
        sandbox.pid_path(f"capi-{provider}").unlink(missing_ok=True)
    state_path(sandbox).unlink(missing_ok=True)
    if failures:
        raise SandboxError(f"could not stop Cluster API of sandbox {sandbox.name!r}: {'; '.join(failures)}")


def start(sandbox, report, timeout: float = 180) -> None:
    """Install Cluster API into the running sandbox and start its controllers; blocks until they
    serve and the ClusterClass is applied.  On failure, what was started is stopped again."""
    try:
        _start(sandbox, report, timeout)
    except BaseException:
        stop(sandbox)
        raise


def _start(sandbox, report, timeout: float) -> None:
    if installed(sandbox):
        raise SandboxError(f"sandbox {sandbox.name!r} already runs Cluster API")
    report(2, "Cluster API: checking binaries")
    binaries, config = require_capi()
    if port_in_use(INMEMORY_DEBUG_PORT):
        raise SandboxError(f"port {INMEMORY_DEBUG_PORT} is in use: the in-memory provider needs it "
                           "(is another sandbox with Cluster API running?)")

    ports = free_ports(3 * len(PROVIDERS))
    state = {"components": {}, "ports": {}}
    for index, provider in enumerate(PROVIDERS):
        webhook, health, diagnostics = ports[3 * index: 3 * index + 3]
        state["ports"][provider] = {"webhook": webhook, "health": health, "diagnostics": diagnostics}
    _save(sandbox, state)

    report(5, "Cluster API: webhook serving certificate")
    cert_dir = sandbox.dir / "capi-certs"
    sandbox.pki.issue_serving(KeyPair(cert_dir / "tls.crt", cert_dir / "tls.key"), "capi-webhooks", ["127.0.0.1", "localhost"])
    ca_bundle = base64.b64encode(sandbox.pki.ca.cert.read_bytes()).decode()

    report(10, "Cluster API: installing CRDs and webhook configurations")
    documents = []
    for provider in PROVIDERS:
        url = f"https://127.0.0.1:{state['ports'][provider]['webhook']}"
        documents += crds(config / provider, provider, url, ca_bundle)
        documents += webhook_configurations(config / provider, provider, url, ca_bundle)
    _apply(sandbox, documents)
    crd_names = [d["metadata"]["name"] for d in documents if d["kind"] == "CustomResourceDefinition"]
    _wait(sandbox, lambda: _established(sandbox, crd_names), timeout, f"{len(crd_names)} CRDs to be established", report, 20)

    report(30, "Cluster API: starting the controllers")
    env = {"KUBECONFIG": str(sandbox.kubeconfig_path), "POD_NAMESPACE": "default", "POD_IP": "127.0.0.1"}
    for provider, binary in PROVIDERS.items():
        argv = controller_argv(binaries[binary], state["ports"][provider], cert_dir)
        pid, ticks = processes.spawn(argv, sandbox.log_path(f"capi-{provider}"), sandbox.pid_path(f"capi-{provider}"), env=env)
        state["components"][provider] = {"argv": argv, "pid": pid, "start_ticks": ticks, "started": time.time()}
        _save(sandbox, state)
    for done, provider in enumerate(PROVIDERS):
        _wait(sandbox, lambda p=provider: _ready(sandbox, state, p), timeout, f"Cluster API {provider} to be ready", report, 40 + 10 * done)

    report(85, f"Cluster API: applying the ClusterClass {CLASS_NAME!r} to namespace {CLASS_NAMESPACE!r}")
    # The webhooks answer once the controllers are ready; the first calls may still race their caches.
    refused: list[str] = []

    def apply_class() -> bool:
        result = sandbox.kubectl("apply", "--server-side", "--field-manager=corral-sandbox", "-n", CLASS_NAMESPACE,
                                 "-f", "-", input=CLASS_FILE.read_text(), check=False, timeout=60)
        refused[:] = [result.stderr.strip()] if result.returncode else []
        return result.returncode == 0

    _wait(sandbox, apply_class, timeout, f"the ClusterClass {CLASS_NAME!r} to be accepted", report, 85,
          detail=lambda: refused[0] if refused else "")
    _wait(sandbox, lambda: _class_ready(sandbox), timeout, f"the ClusterClass {CLASS_NAME!r} to be reconciled", report, 90)
    report(100, f"Cluster API is ready: ClusterClass {CLASS_NAMESPACE}/{CLASS_NAME}")


def controller_argv(binary: Path, ports: dict, cert_dir: Path) -> list[str]:
    return [
        str(binary),
        f"--webhook-port={ports['webhook']}",
        f"--webhook-cert-dir={cert_dir}",
        f"--health-addr=127.0.0.1:{ports['health']}",
        f"--diagnostics-address=127.0.0.1:{ports['diagnostics']}",
        "--insecure-diagnostics",
        "--leader-elect=false",
        f"--feature-gates={FEATURE_GATES}",
        "--v=1",
    ]


def _kustomization(folder: Path) -> dict:
    return yaml.safe_load((folder / "kustomization.yaml").read_text()) or {}


def crds(provider_dir: Path, provider: str, webhook_url: str, ca_bundle: str) -> list[dict]:
    """The provider's CRDs as its crd/kustomization.yaml assembles them: its resources, its labels (the
    contract labels the topology controller reads), and a conversion webhook for each CRD it patches."""
    folder = provider_dir / "crd"
    kustomization = _kustomization(folder)
    labels = {PROVIDER_LABEL: PROVIDER_LABELS.get(provider, provider)}
    for entry in kustomization.get("labels") or []:
        labels.update(entry.get("pairs") or {})
    labels.update(kustomization.get("commonLabels") or {})
    converted = set()
    for patch in kustomization.get("patches") or []:
        path = patch.get("path") if isinstance(patch, dict) else patch
        for doc in yaml.safe_load_all((folder / path).read_text()):
            if doc and doc.get("spec", {}).get("conversion", {}).get("strategy") == "Webhook":
                converted.add(doc["metadata"]["name"])
    result = []
    for resource in kustomization.get("resources") or []:
        crd = yaml.safe_load((folder / resource).read_text())
        crd["metadata"].setdefault("labels", {}).update(labels)
        if crd["metadata"]["name"] in converted and len(crd["spec"]["versions"]) > 1:
            crd["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"url": f"{webhook_url}/convert", "caBundle": ca_bundle},
                },
            }
        result.append(crd)
    return result


def webhook_configurations(provider_dir: Path, provider: str, webhook_url: str, ca_bundle: str) -> list[dict]:
    """The provider's mutating and validating webhook configurations, named after it, calling the
    local controller instead of an in-cluster Service."""
    result = []
    for doc in yaml.safe_load_all((provider_dir / "webhook" / "manifests.yaml").read_text()):
        if not doc:
            continue
        doc["metadata"] = {"name": f"capi-{provider}-{doc['metadata']['name']}", "labels": {PROVIDER_LABEL: PROVIDER_LABELS.get(provider, provider)}}
        for webhook in doc.get("webhooks") or []:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"{webhook_url}{path}", "caBundle": ca_bundle}
        result.append(doc)
    return result


def _apply(sandbox, documents: list[dict]) -> None:
    # Server-side: the CRDs are too large for the last-applied annotation of a client-side apply.
    sandbox.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=corral-sandbox", "-f", "-",
                    input=yaml.safe_dump_all(documents), timeout=120)


def _established(sandbox, names: list[str]) -> bool:
    api = sandbox.api()
    for name in names:
        crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
        if conditions.get("Established") != "True":
            return False
    return True


def _ready(sandbox, state: dict, provider: str) -> bool:
    entry = state["components"][provider]
    if _process(entry) is None:
        log = sandbox.log_path(f"capi-{provider}")
        raise SandboxError(
            f"Cluster API {provider} ({entry['argv'][0]}) exited during start-up "
            f"({processes.exit_reason(entry.get('pid'))}){_hint(log)}; last lines of {log}:\n{_tail(log)}"
        )
    url = f"http://127.0.0.1:{state['ports'][provider]['health']}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _hint(log: Path) -> str:
    """Why a controller could not start, when it is a limit of the host rather than of the sandbox."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    if "too many open files" in text:
        # Each controller watches its certificates with inotify; every kube-apiserver holds six.
        limit = Path("/proc/sys/fs/inotify/max_user_instances")
        current = limit.read_text().strip() if limit.exists() else "?"
        return (f": the host ran out of inotify instances (fs.inotify.max_user_instances={current}, shared by "
                "every sandbox on it); raise it, e.g. `sysctl -w fs.inotify.max_user_instances=1024`")
    return ""


def _class_ready(sandbox) -> bool:
    try:
        cc = sandbox.api().get(f"/apis/cluster.x-k8s.io/v1beta2/namespaces/{CLASS_NAMESPACE}/clusterclasses/{CLASS_NAME}")
    except APIError:
        return False
    # The ClusterClass controller resolves the templates and the variables into status.
    return bool(cc.get("status", {}).get("variables")) and cc["status"].get("observedGeneration") == cc["metadata"]["generation"]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in text if line[:1] in "EF" and line[1:5].isdigit()]
    return "\n".join((errors or text)[-lines:])


def _wait(sandbox, check, timeout: float, what: str, report, percent: int, detail=lambda: "") -> None:
    began = time.monotonic()
    next_note = began + 10

    def note():
        nonlocal next_note
        if time.monotonic() >= next_note:
            next_note += 10
            report(percent, f"Cluster API: still waiting for {what} ({time.monotonic() - began:.0f} s)")

    def probe():
        try:
            return check()
        except (OSError, APIError):
            return False

    report(percent, f"Cluster API: waiting for {what}")
    if not processes.wait_until(probe, timeout, interval=0.5, on_wait=note):
        why = detail()
        raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what} in sandbox {sandbox.name!r}"
                           + (f": {why}" if why else "") + f"; logs in {sandbox.dir / 'logs'}")
