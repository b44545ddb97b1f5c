"""pytest fixtures for tests that need a real Kubernetes control plane.

  sandbox         one 3-node sandbox for the whole session (started lazily, stopped at the end)
  kube_namespace  a fresh namespace per test, deleted afterwards
  kubectl         the pinned kubectl, admin credentials, defaulting to the test's namespace

Without built binaries these tests skip and name the build command; with CI=true they fail instead,
so CI can never go green without exercising real clusters.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import uuid

import psutil
import pytest

from clusters.sandbox import MissingBinaries, Sandbox, SandboxError, default_root, processes, require_binaries


def pytest_configure(config):
    config.addinivalue_line("markers", "kube: needs a real Kubernetes sandbox (make kube-tools)")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_kube_binaries():
    """Skip (locally) or fail (in CI) when the control-plane binaries are not built."""
    try:
        return require_binaries()
    except MissingBinaries as exc:
        problem = str(exc)
    if _in_ci():
        pytest.fail(f"CI must run real clusters: {problem}", pytrace=False)
    pytest.skip(problem)


def require_kube_addon(name):
    """The add-on's binary (metrics-server, alertmanager); skip locally or fail in CI without it."""
    from clusters.sandbox.binaries import require_addon

    try:
        return require_addon(name)
    except MissingBinaries as exc:
        problem = str(exc)
    if _in_ci():
        pytest.fail(f"CI must run the real {name}: {problem}", pytrace=False)
    pytest.skip(problem)


def _session_sandbox_name(purpose: str = "") -> str:
    # The run's pid and start time: pids are recycled (pid_max may be 32768), so a pid alone could
    # keep a dead run's sandbox looking owned forever.  A ``purpose`` names a second one of the run.
    name = f"pytest-{os.getpid()}-{processes.start_ticks(os.getpid())}"
    return f"{name}-{purpose}" if purpose else name


def _owner_alive(name: str) -> bool:
    owner = re.fullmatch(r"pytest-(\d+)(?:-(\d+))?(?:-[a-z]+)?", name)
    if not owner:
        return True  # not a test sandbox: leave it alone
    pid, ticks = int(owner.group(1)), owner.group(2)
    if ticks is None:  # named by an older version
        return psutil.pid_exists(pid)
    return processes.start_ticks(pid) == int(ticks)


def _stop_orphans() -> None:
    """Stop sandboxes of earlier pytest runs that died without teardown (SIGKILL, OOM, a timeout),
    and drop the logs of their failed start-ups. Processes are stopped only after the same identity
    check as `down` (pid, start time and binary), never by name."""
    root = default_root()
    for path in sorted(root.glob("pytest-*")) if root.is_dir() else []:
        if _owner_alive(path.name):
            continue
        try:
            Sandbox(path.name, root).down()
        except SandboxError:
            pass  # not running: down() already removed what was left
        shutil.rmtree(path, ignore_errors=True)


def _teardown_on_sigterm() -> None:
    # `timeout` and CI runners send SIGTERM; turn it into an interrupt so session teardown still
    # stops the sandbox instead of leaving its processes running.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def interrupt(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def sandbox():
    require_kube_binaries()
    _stop_orphans()
    _teardown_on_sigterm()
    cluster = Sandbox(_session_sandbox_name())
    try:
        cluster.up(nodes=3, exec_on_host=True)  # kubectl exec through kwok, tested for real
    except SandboxError as exc:
        pytest.fail(f"could not start the test sandbox: {exc}", pytrace=False)
    yield cluster
    try:
        cluster.down()
    except SandboxError:
        pass


def require_capi_built():
    """Cluster API's controllers and config (make kube-tools); skip locally or fail in CI without them."""
    from clusters.sandbox.binaries import require_capi

    try:
        return require_capi()
    except MissingBinaries as exc:
        problem = str(exc)
    if _in_ci():
        pytest.fail(f"CI must run the real Cluster API: {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def capi_sandbox():
    """A management sandbox: Cluster API's controllers beside it and the ClusterClass default/in-memory
    (`sandbox up --capi`); one per session, as the in-memory provider's ports are fixed."""
    require_kube_binaries()
    require_capi_built()
    _stop_orphans()
    _teardown_on_sigterm()
    cluster = Sandbox(_session_sandbox_name("capi"))
    try:
        cluster.up(nodes=1, capi=True)
    except SandboxError as exc:
        pytest.fail(f"could not start the Cluster API sandbox: {exc}", pytrace=False)
    yield cluster
    try:
        cluster.down()
    except SandboxError:
        pass


@pytest.fixture
def kube_namespace(sandbox, request):
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:6]}"
    sandbox.api().create(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    yield name
    try:
        sandbox.api().request("DELETE", f"/api/v1/namespaces/{name}")
    except Exception:  # noqa: BLE001 - the sandbox may already be gone; nothing to clean then
        pass


class Kubectl:
    """`kubectl(...)` returns stdout and raises on failure; `.run(...)` returns the CompletedProcess."""

    def __init__(self, sandbox: Sandbox, namespace: str | None):
        self.sandbox = sandbox
        self.namespace = namespace

    def _argv(self, args) -> list[str]:
        argv = [str(self.sandbox.bin_dir / "kubectl"), f"--kubeconfig={self.sandbox.kubeconfig_path}"]
        if self.namespace:
            argv.append(f"--namespace={self.namespace}")
        return argv + [str(a) for a in args]

    def run(self, *args, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            self._argv(args), capture_output=True, text=True, input=input, timeout=timeout, check=False
        )

    def __call__(self, *args, input: str | None = None, timeout: float = 60) -> str:
        result = self.run(*args, input=input, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(map(str, args))} failed:\n{result.stderr}")
        return result.stdout


@pytest.fixture
def kubectl(sandbox, kube_namespace) -> Kubectl:
    return Kubectl(sandbox, kube_namespace)


def imported_cluster(sandbox, name):
    """A Corral cluster for ``sandbox``, imported with its administrator's credentials and active."""
    from clusters.models import Cluster

    return Cluster.objects.create(
        name=name, driver="imported", state="active", api_endpoint=sandbox.endpoint,
        credentials={"server": sandbox.endpoint, "ca_data": sandbox.ca_pem, "client_cert": sandbox.admin_cert_pem,
                     "client_key": sandbox.admin_key_pem},
    )
