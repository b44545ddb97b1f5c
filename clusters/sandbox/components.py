"""What a sandbox runs: each component's command line, and the Node objects kwok adopts."""

from __future__ import annotations

from pathlib import Path

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.0.0.0/16"  # kwok hands out pod IPs from here; room for 65k pods

# A simulated node looks like a modest worker VM.
NODE_CAPACITY = {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
NODE_ALLOCATABLE = {"cpu": "3800m", "memory": "15Gi", "pods": "110", "ephemeral-storage": "95Gi"}
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
# kwok serves every node's kubelet metrics on its one port, a path per node; metrics-server (0.7+)
# reads the path from this annotation.
METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"


def _has_default_route() -> bool:
    """kube-apiserver derives its advertised address from the default route and refuses to start without one."""
    for table in ("/proc/net/route", "/proc/net/ipv6_route"):
        try:
            rows = Path(table).read_text().splitlines()
        except OSError:
            continue
        if table.endswith("ipv6_route"):
            defaults = [r.split() for r in rows if r.split()[:2] == ["0" * 32, "00"]]
            if any(fields[-1] != "lo" for fields in defaults):
                return True
        elif any(r.split()[1] == "00000000" and r.split()[0] != "lo" for r in rows[1:]):
            return True
    return False


def command_lines(sandbox, bin_dir: Path, ports: dict) -> dict[str, list[str]]:
    """The command line of every component of ``sandbox``."""
    d, pki = sandbox.dir, sandbox.pki
    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
    sa_issuer = "https://kubernetes.default.svc.cluster.local"
    return {
        "etcd": [
            str(bin_dir / "etcd"),
            "--name=sandbox",
            f"--data-dir={d / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=sandbox={peer_url}",
            # Throw-away clusters: skip fsync, compact hourly, keep the in-memory raft log short.
            "--unsafe-no-fsync",
            "--auto-compaction-retention=1",
            "--snapshot-count=5000",
            f"--quota-backend-bytes={4 * 1024**3}",
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-apiserver']}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--authorization-mode=Node,RBAC",
            # On top of the default plugins (which already include these), named so nobody drops them.
            "--enable-admission-plugins=NodeRestriction,ResourceQuota,LimitRanger,ServiceAccount",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={sa_issuer}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--requestheader-client-ca-file={pki.ca.cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.client('front-proxy-client').cert}",
            f"--proxy-client-key-file={pki.client('front-proxy-client').key}",
            *([] if _has_default_route() else ["--advertise-address=127.0.0.1"]),
            "--allow-privileged=true",
            "--profiling=false",
            "--max-requests-inflight=800",
            "--max-mutating-requests-inflight=400",
            "--v=1",
        ],
        "kube-controller-manager": [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={d / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={d / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={d / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-controller-manager']}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca.cert}",
            f"--cluster-signing-cert-file={pki.ca.cert}",
            f"--cluster-signing-key-file={pki.ca.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--leader-elect=false",
            "--kube-api-qps=300",
            "--kube-api-burst=600",
            "--concurrent-replicaset-syncs=10",
            "--profiling=false",
            "--v=1",
        ],
        "kube-scheduler": [
            str(bin_dir / "kube-scheduler"),
            f"--config={d / 'scheduler.yaml'}",
            f"--authentication-kubeconfig={d / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={d / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-scheduler']}",
            "--profiling=false",
            "--v=1",
        ],
        "kwok": [
            str(bin_dir / "kwok"),
            f"--kubeconfig={sandbox.kubeconfig_path}",
            f"--config={d / 'kwok.yaml'}",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--server-address=127.0.0.1:{ports['kwok']}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            "--node-ip=127.0.0.1",
            f"--node-port={ports['kwok']}",
            f"--cidr={POD_CIDR}",
            "--node-lease-duration-seconds=40",
        ],
    }




def node_manifest(name: str) -> dict:
    """A Node that kwok adopts (by annotation) and keeps Ready; capacity of a 4-CPU, 16 GiB VM."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0",
                            METRICS_PATH_ANNOTATION: f"/metrics/nodes/{name}/metrics/resource"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/worker": "",
                "node.kubernetes.io/instance-type": "sandbox.4x16",
            },
        },
        "spec": {},
        "status": {
            "capacity": NODE_CAPACITY,
            "allocatable": NODE_ALLOCATABLE,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "Corral sandbox (kwok)",
                "kubeletVersion": "v1.36.3",
                "containerRuntimeVersion": "kwok://v0.8.0",
                "kernelVersion": "6.1.0",
                "kubeProxyVersion": "",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
            },
        },
    }


def metrics_server_line(sandbox, binary: Path, ports: dict) -> list[str]:
    """metrics-server outside the cluster: it scrapes kwok's simulated kubelets and serves
    metrics.k8s.io, which the API server's aggregator proxies to (an APIService on loopback)."""
    d, pki = sandbox.dir, sandbox.pki
    return [
        str(binary),
        f"--kubeconfig={sandbox.kubeconfig_path}",
        f"--authentication-kubeconfig={sandbox.kubeconfig_path}",
        f"--authorization-kubeconfig={sandbox.kubeconfig_path}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['metrics-server']}",
        f"--cert-dir={d / 'metrics-server'}",
        f"--requestheader-client-ca-file={pki.ca.cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--kubelet-insecure-tls",
        "--kubelet-preferred-address-types=InternalIP",
        "--kubelet-use-node-status-port",
        "--metric-resolution=10s",
        "--kubelet-request-timeout=5s",
        "--v=1",
    ]
