"""A real Kubernetes control plane on loopback, with kwok nodes instead of machines.

One sandbox = etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok, all the
upstream binaries built by `make kube-tools`, with state under <root>/<name>/:

  sandbox.json      ports, binaries, command lines and pids (what `down` needs to stop it)
  kubeconfig        admin kubeconfig (certificates embedded, usable from anywhere)
  pki/              CA, serving, client and service-account keys
  logs/<c>.log      one log per component
  pids/<c>.pid      one pid file per component
  etcd/             etcd's data directory
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from . import capi as cluster_api
from . import processes
from .api import APIError, KubeAPI, client_context
from .binaries import REPO_ROOT, kube_bin_dir, require_binaries, require_capi
from .components import POD_CIDR, command_lines, metrics_server_line, node_manifest
from .errors import SandboxError
from .pki import PKI
from .ports import free_ports, port_in_use, port_taken, reserve_port

NAME_MAX = 63  # a DNS label, like the cluster slugs sandbox names are made from
NAME_RE = re.compile(rf"^[a-z0-9]([a-z0-9-]{{0,{NAME_MAX - 2}}}[a-z0-9])?$")
STAGES_FILE = Path(__file__).with_name("kwok-stages.yaml")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
PORTS = ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "metrics-server")
# Run when built (make kube-tools): metrics.k8s.io for `kubectl top` and Corral's usage figures.
OPTIONAL = ("metrics-server",)
METRICS_FILE = Path(__file__).with_name("kwok-metrics.yaml")
START_ATTEMPTS = 3  # a port taken between its choice and its bind costs a retry with fresh ports
PROGRESS_EVERY = 10  # seconds between "still waiting" lines
LOCK_GRACE = 3  # seconds a busy sandbox lock is retried before `up`/`down` is refused

Progress = Callable[[int, str], None]


def _cri_log_line(text: str) -> str:
    """A line in the CRI log format kwok reads: time, stream, full-line tag, text."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{now} stdout F {text}\n"


def sandbox_name(text: str) -> str:
    """A valid sandbox name for `text` (e.g. "cluster-<slug>"): itself when it is one, otherwise cut
    to fit with a hash of the whole, so two long names that share a beginning stay apart."""
    if NAME_RE.match(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", text.lower())[: NAME_MAX - len(digest) - 1].strip("-")
    return f"{stem}-{digest}" if stem else digest


def default_root() -> Path:
    """$CORRAL_SANDBOX_ROOT, else sandboxes/ under the local state directory ($CORRAL_VAR_DIR or var/),
    as the portal's settings say (SANDBOX_ROOT)."""
    if os.environ.get("CORRAL_SANDBOX_ROOT"):
        return Path(os.environ["CORRAL_SANDBOX_ROOT"])
    return Path(os.environ.get("CORRAL_VAR_DIR") or REPO_ROOT / "var") / "sandboxes"


def _tail(path: Path, lines: int = 15) -> str:
    """The log's klog error/fatal lines if it has any (the flag dump drowns them otherwise), else its end."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in text if re.match(r"^[EF]\d{4} ", line) or '"level":"fatal"' in line]
    return "\n".join((errors or text)[-lines:])


def _try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class _PortTaken(SandboxError):
    def __init__(self, port: int, message: str):
        super().__init__(message)
        self.port = port


class Sandbox:
    def __init__(self, name: str, root: Path | None = None):
        if not NAME_RE.match(name):
            raise SandboxError(
                f"invalid sandbox name {name!r}: use lowercase letters, digits and '-' (not first or last), "
                f"at most {NAME_MAX} characters"
            )
        self.name = name
        self.root = Path(root) if root else default_root()
        self.dir = self.root / name
        self.pki = PKI(self.dir / "pki")
        self._port_forward_hold: socket.socket | None = None

    def __repr__(self) -> str:
        return f"<Sandbox {self.name} at {self.dir}>"

    # -- paths and state ---------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.dir / "sandbox.json"

    @property
    def kubeconfig_path(self) -> Path:
        return self.dir / "kubeconfig"

    def log_path(self, component: str) -> Path:
        return self.dir / "logs" / f"{component}.log"

    def pid_path(self, component: str) -> Path:
        return self.dir / "pids" / f"{component}.pid"

    def _state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None

    def _save_state(self, state: dict) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)

    def _require_state(self) -> dict:
        state = self._state()
        if state is None:
            raise SandboxError(f"sandbox {self.name!r} is not running")
        return state

    @property
    def port(self) -> int:
        return self._require_state()["ports"]["kube-apiserver"]

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_pem(self) -> str:
        return self.pki.ca.cert.read_text()

    @property
    def admin_cert_pem(self) -> str:
        return self.pki.client("admin").cert.read_text()

    @property
    def admin_key_pem(self) -> str:
        return self.pki.client("admin").key.read_text()

    @property
    def bin_dir(self) -> Path:
        state = self._state()
        return Path(state["bin_dir"]) if state else kube_bin_dir()

    def api(self) -> KubeAPI:
        """An admin (system:masters) client for this sandbox's API server."""
        admin = self.pki.client("admin")
        return KubeAPI(self.port, self.pki.ca.cert, admin.cert, admin.key)

    # -- queries -------------------------------------------------------------------------------------

    @classmethod
    def list(cls, root: Path | None = None) -> list[Sandbox]:
        root = Path(root) if root else default_root()
        if not root.is_dir():
            return []
        return [
            cls(path.parent.name, root)
            for path in sorted(root.glob("*/sandbox.json"))
            if NAME_RE.match(path.parent.name)
        ]

    @contextlib.contextmanager
    def _exclusive(self):
        """One `up`/`down` at a time per sandbox, across processes (CLI, workers, tests)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{self.name}.lock", "w") as lock:
            # A child that another thread is forking holds a copy of this descriptor, and so the lock,
            # until it closes its descriptors before exec(): give such a holder a moment to let go.
            if not processes.wait_until(lambda: _try_lock(lock), LOCK_GRACE, interval=0.05):
                raise SandboxError(f"sandbox {self.name!r} is being started or stopped by another process")
            yield

    def _process(self, state: dict, component: str):
        entry = state["components"].get(component)
        if not entry:
            return None
        return processes.process_for(entry.get("pid"), entry["argv"][0], entry.get("start_ticks"), entry.get("started"))

    def is_running(self) -> bool:
        state = self._state()
        return bool(state) and any(self._process(state, c) for c in COMPONENTS)

    def status(self) -> dict:
        state = self._state()
        if state is None:
            return {"name": self.name, "running": False, "components": {}}
        components = {}
        for component in (*COMPONENTS, *(c for c in OPTIONAL if c in state["components"])):
            process = self._process(state, component)
            components[component] = {
                "pid": state["components"].get(component, {}).get("pid"),
                "alive": process is not None,
                "rss_bytes": processes.rss_bytes([process]) if process else 0,
            }
        components.update(cluster_api.status(self))
        return {
            "name": self.name,
            "running": any(c["alive"] for c in components.values()),
            "healthy": all(c["alive"] for c in components.values()),
            "endpoint": f"https://127.0.0.1:{state['ports']['kube-apiserver']}",
            "kubeconfig": str(self.kubeconfig_path),
            "nodes": state["nodes"],
            "started_at": state.get("started_at"),
            "components": components,
            "rss_bytes": sum(c["rss_bytes"] for c in components.values()),
        }

    def rss_bytes(self) -> int:
        """Resident memory of every process of this sandbox."""
        return self.status().get("rss_bytes", 0)

    # -- lifecycle -----------------------------------------------------------------------------------

    def up(
        self,
        nodes: int = 3,
        progress: Progress | None = None,
        api_port: int | None = None,
        timeout: float = 120,
        exec_on_host: bool = False,
        capi: bool = False,
    ) -> None:
        """Start the control plane and `nodes` Ready kwok nodes; blocks until they are.

        ``capi`` makes it a Cluster API management cluster as well (clusters/sandbox/capi.py): the
        controllers run beside it and the ClusterClass ``in-memory`` is applied; if that fails, the
        whole sandbox is stopped again.

        Every pod's logs (``kubectl logs``, ``-f`` follows) and attach read ``pod.log`` in the
        sandbox's directory.  ``exec_on_host`` makes ``kubectl exec`` run the command on this host
        (kwok's ClusterExec) and ``kubectl port-forward`` reach ``port_forward_port`` on it (kwok's
        ClusterPortForward): for tests and one's own machine only, never for sandboxes that others
        can exec into, so Corral's sandbox driver leaves it off."""
        last = None

        def report(percent: int, message: str) -> None:
            nonlocal last
            if progress and message != last:  # polling repeats itself; the log should not
                last = message
                progress(percent, message)

        if capi:
            require_capi()  # before anything starts
        with self._exclusive():
            try:
                self._up(nodes, report, api_port, timeout, exec_on_host)
            except BaseException:
                self._release_port_forward_port()
                raise
            if capi:
                try:
                    cluster_api.start(self, report, timeout=max(timeout, 180))
                except BaseException:
                    self._down()
                    raise

    def _up(self, nodes: int, report: Progress, api_port: int | None, timeout: float, exec_on_host: bool = False) -> None:
        if nodes < 0:
            raise SandboxError("the number of nodes cannot be negative")
        if self.is_running():
            raise SandboxError(f"sandbox {self.name!r} is already running at {self.endpoint}")
        if api_port is not None and port_in_use(api_port):
            raise SandboxError(f"port {api_port} on 127.0.0.1 is already in use; choose another or omit it")
        report(2, "checking binaries")
        bin_dir = require_binaries(kube_bin_dir())

        if self.dir.exists():
            shutil.rmtree(self.dir)  # leftovers of a stopped or failed sandbox
        self.dir.mkdir(parents=True)
        report(5, "generating certificates")
        self.pki.generate(self.name)

        state = {
            "name": self.name,
            "nodes": nodes,
            "bin_dir": str(bin_dir),
            "ports": {},
            "started_at": time.time(),
            "components": {},
        }
        for attempt in range(1, START_ATTEMPTS + 1):
            ports = dict(zip(PORTS, free_ports(len(PORTS), avoid=api_port)))
            if api_port is not None:
                ports["kube-apiserver"] = api_port
            state["ports"] = ports
            self._write_configs(ports, exec_on_host)
            argvs = command_lines(self, bin_dir, ports)
            metrics = _metrics_server_binary()
            if metrics is not None:
                argvs["metrics-server"] = metrics_server_line(self, metrics, ports)
            try:
                self._start_all(state, argvs, nodes, report, timeout)
                break
            except _PortTaken as exc:
                self._stop_all(state)
                state["components"] = {}
                if attempt == START_ATTEMPTS or exc.port == api_port:
                    self.state_path.unlink(missing_ok=True)
                    tried = "" if exc.port == api_port else f" (tried {attempt} sets of ports)"
                    raise SandboxError(f"{exc}{tried}") from None
                # Keep the failed attempt's logs to read, and start etcd afresh.
                (self.dir / "logs").rename(self.dir / f"logs-attempt-{attempt}")
                shutil.rmtree(self.dir / "etcd", ignore_errors=True)
                report(8, f"port {exc.port} was taken by another program meanwhile; retrying with other ports")
            except BaseException:
                try:
                    self._stop_all(state)
                finally:
                    self.state_path.unlink(missing_ok=True)
                raise
        report(100, f"sandbox {self.name} is ready at {self.endpoint}")

    def _start_all(self, state: dict, argvs: dict, nodes: int, report: Progress, timeout: float) -> None:
        def wait(component, check, percent, what=None, wait_timeout=timeout):
            self._wait_healthy(state, component, check, wait_timeout, what=what, report=report, percent=percent)

        self._start(state, "etcd", argvs["etcd"])
        report(10, "waiting for etcd")
        wait("etcd", self._etcd_healthy, 10)

        self._start(state, "kube-apiserver", argvs["kube-apiserver"])
        report(20, "waiting for kube-apiserver")
        wait("kube-apiserver", self._apiserver_ready, 20)

        report(45, "starting controller-manager, scheduler and kwok")
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            self._start(state, component, argvs[component])
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            wait(component, lambda c=component: self._component_healthy(c), 45)

        report(60, f"creating {nodes} simulated nodes")
        self._create_nodes(nodes, lambda done: report(60 + 15 * done // max(nodes, 1), f"created {done} of {nodes} nodes"))
        report(75, "waiting for nodes to be Ready")
        wait("kwok", lambda: self._nodes_ready(nodes, report), 75, f"{nodes} Ready nodes", max(timeout, nodes * 0.2))
        report(90, "waiting for the default service account")
        wait("kube-controller-manager", self._default_service_account_exists, 90, "the default service account")
        if "metrics-server" in argvs:
            # Alive is enough: it is ready once a node runs a pod (kwok's node usage is its pods' sum).
            report(92, "starting metrics-server")
            self._start(state, "metrics-server", argvs["metrics-server"])
            self._register_metrics_api(state["ports"]["metrics-server"])
            wait("metrics-server", lambda: self._component_healthy("metrics-server", "/livez"), 92, "metrics-server")

    def _register_metrics_api(self, port: int) -> None:
        """metrics.k8s.io served by the metrics-server process on loopback: an ExternalName Service
        (the aggregator resolves it to localhost) and the APIService pointing at it; and, as
        metrics-server's own manifests do, the aggregated reader role, so that whoever holds the
        built-in view, edit or admin role (Corral's project roles) may read their pods' usage."""
        api = self.api()
        aggregate = {f"rbac.authorization.k8s.io/aggregate-to-{role}": "true" for role in ("view", "edit", "admin")}
        api.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "system:aggregated-metrics-reader", "labels": aggregate},
            "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}],
        }, exist_ok=True)
        api.create("/api/v1/namespaces/kube-system/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "metrics-server", "namespace": "kube-system"},
            "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"name": "https", "port": port, "protocol": "TCP"}]},
        }, exist_ok=True)
        api.create("/apis/apiregistration.k8s.io/v1/apiservices", {
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100, "versionPriority": 100,
                     "insecureSkipTLSVerify": True, "service": {"namespace": "kube-system", "name": "metrics-server", "port": port}},
        }, exist_ok=True)

    def down(self) -> None:
        """Stop every process of this sandbox by pid and remove its directory."""
        with self._exclusive():
            self._down()

    def _release_port_forward_port(self) -> None:
        if self._port_forward_hold is not None:
            self._port_forward_hold.close()
            self._port_forward_hold = None

    def _down(self) -> None:
        self._release_port_forward_port()
        cluster_api.stop(self)  # first: its controllers talk to the API server (and may outlive it)
        state = self._state()
        if state is None or not self.is_running():
            if self.dir.exists():
                shutil.rmtree(self.dir)
            raise SandboxError(f"sandbox {self.name!r} is not running")
        self._stop_all(state)
        shutil.rmtree(self.dir)

    def stop_apiserver(self) -> None:
        """Stop only kube-apiserver, to simulate a cluster that becomes unreachable."""
        state = self._require_state()
        entry = state["components"]["kube-apiserver"]
        if not processes.stop(
            entry.get("pid"), entry["argv"][0], entry.get("start_ticks"), started=entry.get("started")
        ):
            raise SandboxError(f"kube-apiserver of sandbox {self.name!r} is not running")
        entry["pid"] = None
        self._save_state(state)
        self.pid_path("kube-apiserver").unlink(missing_ok=True)

    def start_apiserver(self, timeout: float = 120, flags: dict[str, str] | None = None) -> None:
        """Start kube-apiserver again on the same port, with the same certificates and data;
        ``flags`` ({"--runtime-config": "batch/v1=false"}) are set (or replaced) for this start
        and the next ones."""
        state = self._require_state()
        if self._process(state, "kube-apiserver"):
            raise SandboxError(f"kube-apiserver of sandbox {self.name!r} is already running")
        port = state["ports"]["kube-apiserver"]
        if port_in_use(port):
            raise SandboxError(f"port {port} on 127.0.0.1 is already in use; cannot restart kube-apiserver")
        argv = state["components"]["kube-apiserver"]["argv"]
        for flag, value in (flags or {}).items():
            argv = [a for a in argv if a.split("=", 1)[0] != flag] + [f"{flag}={value}"]
        self._start(state, "kube-apiserver", argv)
        self._wait_healthy(state, "kube-apiserver", self._apiserver_ready, timeout)

    def admin_token(self, expiration_seconds: int = 365 * 24 * 3600) -> str:
        """A bearer token for ServiceAccount kube-system/corral-admin, bound to cluster-admin."""
        api = self.api()
        api.create(
            "/api/v1/namespaces/kube-system/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "corral-admin"}},
            exist_ok=True,
        )
        api.create(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "corral-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "corral-admin", "namespace": "kube-system"}],
            },
            exist_ok=True,
        )
        response = api.request(
            "POST",
            "/api/v1/namespaces/kube-system/serviceaccounts/corral-admin/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
        )
        return response["status"]["token"]

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None):
        """Run the pinned kubectl against this sandbox as admin; returns CompletedProcess."""
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig_path}", *args]
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise SandboxError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    # -- internals -----------------------------------------------------------------------------------

    def _start(self, state: dict, component: str, argv: list[str]) -> None:
        pid, ticks = processes.spawn(argv, self.log_path(component), self.pid_path(component))
        state["components"][component] = {"argv": argv, "pid": pid, "start_ticks": ticks, "started": time.time()}
        self._save_state(state)

    def _wait_healthy(self, state, component, check, timeout, what=None, report=None, percent=0) -> None:
        log = self.log_path(component)
        began = time.monotonic()
        next_note = began + PROGRESS_EVERY

        def alive():
            entry = state["components"][component]
            if self._process(state, component):
                return
            reason = processes.exit_reason(entry.get("pid"))
            taken = port_taken(log)
            if taken:
                raise _PortTaken(
                    taken, f"{component} of sandbox {self.name!r} could not bind port {taken}: another program "
                    f"took it after it was chosen; last lines of {log}:\n{_tail(log)}"
                )
            raise SandboxError(
                f"{component} of sandbox {self.name!r} exited during start-up ({reason}); "
                f"last lines of {log}:\n{_tail(log)}"
            )

        def probe():
            alive()
            try:
                return check()
            except (OSError, APIError):
                return False

        def note():
            # Under CPU load a step can take long; say so rather than look stuck.
            nonlocal next_note
            if report and time.monotonic() >= next_note:
                next_note += PROGRESS_EVERY
                report(percent, f"still waiting for {what or component} ({time.monotonic() - began:.0f} s)")

        if not processes.wait_until(probe, timeout, on_wait=note):
            raise SandboxError(
                f"timed out after {timeout:.0f}s waiting for {what or component} in sandbox {self.name!r} "
                f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs); "
                f"last lines of {log}:\n{_tail(log)}"
            )

    def _stop_all(self, state: dict) -> None:
        failures = []
        for component in reversed((*COMPONENTS, *OPTIONAL)):
            entry = state["components"].get(component)
            if not entry:
                continue
            try:
                processes.stop(entry.get("pid"), entry["argv"][0], entry.get("start_ticks"), started=entry.get("started"))
            except OSError as exc:
                failures.append(str(exc))
                continue
            self.pid_path(component).unlink(missing_ok=True)
        if failures:
            raise SandboxError(f"could not stop sandbox {self.name!r}: {'; '.join(failures)}")

    def compact_etcd(self, revision: int | None = None) -> int:
        """Compact etcd's history up to ``revision`` (its current one by default), as kube-apiserver
        does every five minutes (--etcd-compaction-interval: to the revision it noted five minutes
        before), and return that revision: a watch asked to start from an older resourceVersion
        then gets 410 Gone ("too old")."""
        revision = revision or self.etcd_revision()
        self._etcd_post("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def etcd_revision(self) -> int:
        """etcd's current revision (the resourceVersion of a list made now)."""
        return int(self._etcd_post("/v3/kv/range", {"key": "Lw=="})["header"]["revision"])  # any key: the header says it

    def _etcd_post(self, path: str, body: dict) -> dict:
        import urllib.request

        port = self._require_state()["ports"]["etcd"]
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def _etcd_healthy(self) -> bool:
        import urllib.request

        port = self._state()["ports"]["etcd"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return json.load(response).get("health") == "true"

    def _apiserver_ready(self) -> bool:
        self.api().get("/readyz")
        return True

    def _component_healthy(self, component: str, path: str = "/healthz") -> bool:
        import urllib.request

        port = self._state()["ports"][component]
        context = client_context(None)
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", timeout=2, context=context) as r:
            return r.status == 200

    def _nodes_ready(self, wanted: int, report: Progress) -> bool:
        items = self.api().get("/api/v1/nodes")["items"]
        ready = sum(
            1
            for node in items
            for cond in node.get("status", {}).get("conditions", [])
            if cond["type"] == "Ready" and cond["status"] == "True"
        )
        if ready < wanted:
            report(75 + 15 * ready // max(wanted, 1), f"{ready} of {wanted} nodes Ready")
        return ready >= wanted

    def _default_service_account_exists(self) -> bool:
        self.api().get("/api/v1/namespaces/default/serviceaccounts/default")
        return True

    def _create_nodes(self, count: int, on_progress: Callable[[int], None]) -> None:
        api = self.api()
        step = max(count // 10, 1)

        def create(index: int) -> None:
            api.create("/api/v1/nodes", node_manifest(f"kwok-node-{index}"), exist_ok=True)

        with ThreadPoolExecutor(max_workers=8) as pool:
            for done, _ in enumerate(pool.map(create, range(count)), start=1):
                if done % step == 0 and done < count:
                    on_progress(done)

    def _kubeconfig(self, user: str, port: int, embed: bool) -> dict:
        pair = self.pki.client(user)
        if embed:
            import base64

            def data(path: Path) -> str:
                return base64.b64encode(path.read_bytes()).decode()

            cluster = {"certificate-authority-data": data(self.pki.ca.cert)}
            credentials = {
                "client-certificate-data": data(pair.cert),
                "client-key-data": data(pair.key),
            }
        else:
            cluster = {"certificate-authority": str(self.pki.ca.cert)}
            credentials = {"client-certificate": str(pair.cert), "client-key": str(pair.key)}
        cluster["server"] = f"https://127.0.0.1:{port}"
        context = f"sandbox-{self.name}"
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": f"{context}-{user}", "user": credentials}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-{user}"}}],
            "current-context": context,
        }

    @property
    def pod_log_path(self) -> Path:
        """What kwok serves as every container's log (and attach output); append to it to follow."""
        return self.dir / "pod.log"

    @property
    def port_forward_port(self) -> int | None:
        """With ``exec_on_host``: the port on 127.0.0.1 every pod port-forward reaches.

        The Sandbox object that started it holds the port until ``down`` (``ports.reserve_port``):
        nothing else binds it meanwhile, only ``listen_for_port_forwards``."""
        path = self.dir / "port-forward-port"
        return int(path.read_text()) if path.exists() else None

    def listen_for_port_forwards(self) -> socket.socket:
        """A listening socket on ``port_forward_port``: what every pod port-forward connects to."""
        port = self.port_forward_port
        if port is None:
            raise SandboxError(f"sandbox {self.name!r} was not started with exec_on_host")
        return socket.create_server(("127.0.0.1", port), reuse_port=True)

    def append_pod_log(self, text: str) -> None:
        """Add a line to every simulated container's log (``kubectl logs -f`` shows it)."""
        with open(self.pod_log_path, "a") as log:
            log.write(_cri_log_line(text))

    def _write_configs(self, ports: dict, exec_on_host: bool = False) -> None:
        port = ports["kube-apiserver"]
        self.kubeconfig_path.write_text(yaml.safe_dump(self._kubeconfig("admin", port, embed=True)))
        self.kubeconfig_path.chmod(0o600)
        for user in ("controller-manager", "scheduler"):
            (self.dir / f"{user}.kubeconfig").write_text(yaml.safe_dump(self._kubeconfig(user, port, embed=False)))
        (self.dir / "scheduler.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {
                        "kubeconfig": str(self.dir / "scheduler.kubeconfig"),
                        # The default 50 QPS binds 10,000 pods in minutes; loopback can take far more.
                        "qps": 500,
                        "burst": 1000,
                    },
                    "leaderElection": {"leaderElect": False},
                }
            )
        )
        kwok_options = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokConfiguration",
            "options": {
                "cidr": POD_CIDR,
                "nodeLeaseDurationSeconds": 40,
                "nodeLeaseParallelism": 16,
                "podPlayStageParallelism": 16,
                "nodePlayStageParallelism": 8,
                # The kubelet API kwok serves: logs, attach, exec, port-forward (see _simulated).
                "enableDebuggingHandlers": True,
            },
        }
        self.pod_log_path.write_text(_cri_log_line("corral sandbox: simulated container log"))
        simulated = [
            {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs", "metadata": {"name": "corral-logs"},
             "spec": {"logs": [{"logsFile": str(self.pod_log_path), "follow": True}]}},
            {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterAttach", "metadata": {"name": "corral-attach"},
             "spec": {"attaches": [{"logsFile": str(self.pod_log_path)}]}},
        ]
        if exec_on_host:
            work = self.dir / "exec"
            work.mkdir(exist_ok=True)
            simulated.append({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterExec", "metadata": {"name": "corral-exec"},
                              "spec": {"execs": [{"local": {"workDir": str(work)}}]}})
            # Every pod's every port forwards to one port on this host (whatever listens there),
            # held from now on: the session's sandbox is started long before a test listens there,
            # and another sandbox's components chose that free port meanwhile (CI, stop 21).
            if self._port_forward_hold is None:
                self._port_forward_hold = reserve_port()
            target = self._port_forward_hold.getsockname()[1]
            (self.dir / "port-forward-port").write_text(str(target))
            simulated.append({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterPortForward", "metadata": {"name": "corral-port-forward"},
                              "spec": {"forwards": [{"target": {"port": target, "address": "127.0.0.1"}}]}})
        (self.dir / "kwok.yaml").write_text(
            yaml.safe_dump(kwok_options) + "---\n" + STAGES_FILE.read_text() + "\n---\n" + METRICS_FILE.read_text()
            + "\n---\n" + yaml.safe_dump_all(simulated)
        )


def _metrics_server_binary():
    """metrics-server when it is built (make kube-tools), else None: the sandbox runs without it."""
    from .binaries import addon_path

    try:
        path = addon_path("metrics-server")
    except Exception:
        return None
    return path if os.access(path, os.X_OK) else None
