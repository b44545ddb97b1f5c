"""Real Kubernetes sandboxes: upstream etcd, kube-apiserver, controller-manager, scheduler and kwok
nodes on loopback. No Django imports here, so bench scripts and pytest fixtures can use it directly."""

from .binaries import BUILD_COMMAND, kube_bin_dir, require_binaries
from .components import node_manifest
from .errors import MissingBinaries, SandboxError
from .sandbox import Sandbox, default_root, sandbox_name

__all__ = [
    "BUILD_COMMAND",
    "MissingBinaries",
    "Sandbox",
    "SandboxError",
    "default_root",
    "kube_bin_dir",
    "node_manifest",
    "require_binaries",
    "sandbox_name",
]
