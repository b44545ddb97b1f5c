"""Where the pinned control-plane binaries live, and a clear error when they are not built."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from .errors import MissingBinaries

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "kube" / "build.sh"
BUILD_COMMAND = "make kube-tools"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")


@functools.cache
def kube_bin_dir() -> Path:
    """The cache directory for the current pins; $CORRAL_KUBE_BIN_DIR overrides it.

    The key is computed by tools/kube/build.sh itself so Python and the build can never disagree.
    """
    override = os.environ.get("CORRAL_KUBE_BIN_DIR")
    if override:
        return Path(override)
    try:
        out = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "--print-bin-dir"],
            check=True, capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise MissingBinaries(
            f"cannot locate the Kubernetes binaries ({detail.strip()}); build them with `{BUILD_COMMAND}`"
        ) from exc
    return Path(out.stdout.strip())


def require_binaries(bin_dir: Path | None = None) -> Path:
    bin_dir = bin_dir or kube_bin_dir()
    missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise MissingBinaries(
            f"missing Kubernetes binaries in {bin_dir}: {', '.join(missing)}; "
            f"build them with `{BUILD_COMMAND}`"
        )
    return bin_dir


# Cluster API's controllers (one module, tools/kube/capi/): core, kubeadm bootstrap and control plane, in-memory
# infrastructure; clusters/sandbox/capi.py runs them beside a sandbox.
CAPI = ("capi-manager", "capi-kubeadm-bootstrap", "capi-kubeadm-control-plane", "capi-inmemory")

# Add-ons (metrics-server, Alertmanager, helm, Cluster API): each pinned in its own module under tools/kube/<name>/
# with its own cache key, so they never change the control plane's key (tools/kube/addons.sh).
ADDONS_SCRIPT = REPO_ROOT / "tools" / "kube" / "addons.sh"
ADDONS = ("metrics-server", "alertmanager", "helm", *CAPI)


@functools.cache
def addon_path(name: str) -> Path:
    """Where the add-on's binary is (or would be) for the current pins; the key is computed by
    tools/kube/addons.sh itself, as for the control plane.  $CORRAL_<NAME>_BIN overrides it."""
    override = os.environ.get(f"CORRAL_{name.upper().replace('-', '_')}_BIN")
    if override:
        return Path(override)
    try:
        out = subprocess.run(["bash", str(ADDONS_SCRIPT), "--print-bin", name], check=True, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise MissingBinaries(f"cannot locate {name} ({detail.strip()}); build it with `{BUILD_COMMAND}`") from exc
    return Path(out.stdout.strip())


def require_addon(name: str) -> Path:
    path = addon_path(name)
    if not os.access(path, os.X_OK):
        raise MissingBinaries(f"{name} is not built ({path}); build it with `{BUILD_COMMAND}`")
    return path


@functools.cache
def capi_config_dir() -> Path:
    """Where `make kube-tools` copies Cluster API's CRDs and webhook configurations (the modules'
    config/ folders: <provider>/crd, <provider>/webhook); $CORRAL_CAPI_CONFIG_DIR overrides it."""
    override = os.environ.get("CORRAL_CAPI_CONFIG_DIR")
    if override:
        return Path(override)
    try:
        out = subprocess.run(["bash", str(ADDONS_SCRIPT), "--print-capi-config"], check=True, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise MissingBinaries(f"cannot locate Cluster API's config ({detail.strip()}); build it with `{BUILD_COMMAND}`") from exc
    return Path(out.stdout.strip())


def require_capi() -> tuple[dict[str, Path], Path]:
    """Cluster API's binaries by name and its config directory, or a clear error naming what is missing."""
    binaries = {name: addon_path(name) for name in CAPI}
    missing = [name for name, path in binaries.items() if not os.access(path, os.X_OK)]
    config = capi_config_dir()
    if not (config / ".complete").exists():
        missing.append(f"config ({config})")
    if missing:
        raise MissingBinaries(f"Cluster API is not built ({', '.join(missing)}); build it with `{BUILD_COMMAND}`")
    return binaries, config
