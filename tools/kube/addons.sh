#!/usr/bin/env bash
# Builds the sandbox add-ons, each pinned in its own Go module with its own cache key, into
#   ${CORRAL_KUBE_CACHE:-$HOME/.cache/corral/kube}/addons/<name>-<key>/bin/<name>
# metrics-server (tools/kube/metrics-server/) serves metrics.k8s.io in sandboxes; Alertmanager
# (tools/kube/alertmanager/) receives Corral's alerts in the tests; helm (tools/kube/helm/) lints,
# renders and installs the chart deploy/helm/corral in the tests; Cluster API (tools/kube/capi/, one
# module for four binaries: the core manager, the kubeadm bootstrap and control-plane providers and the
# in-memory infrastructure provider) makes a sandbox a management cluster (clusters/sandbox/capi.py).
# Each key hashes only that module's go.mod/go.sum, its package and flags, and the Go version: adding or
# bumping an add-on never changes the key of the control plane built by build.sh (nor of the others).
#
#   bash tools/kube/addons.sh                   build what is missing (part of make kube-tools)
#   bash tools/kube/addons.sh --print-bin NAME  print where NAME's binary is (or would be); build nothing
#   bash tools/kube/addons.sh --print-capi-config  print where Cluster API's CRDs and webhooks are copied
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
go="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$go" ]]; then
    echo "kube-tools: Go toolchain not found (set GO=/path/to/go or put go on PATH)" >&2
    exit 1
fi
cache_root="${CORRAL_KUBE_CACHE:-$HOME/.cache/corral/kube}"
ldflags="-s -w"

# name -> package (the module directory is tools/kube/<name> unless module_dir says otherwise)
declare -A package=(
    [metrics-server]="sigs.k8s.io/metrics-server/cmd/metrics-server"
    [alertmanager]="github.com/prometheus/alertmanager/cmd/alertmanager"
    [helm]="helm.sh/helm/v3/cmd/helm"
    [capi-manager]="sigs.k8s.io/cluster-api/core"
    [capi-kubeadm-bootstrap]="sigs.k8s.io/cluster-api/bootstrap/kubeadm"
    [capi-kubeadm-control-plane]="sigs.k8s.io/cluster-api/controlplane/kubeadm"
    [capi-inmemory]="sigs.k8s.io/cluster-api/test/infrastructure/docker"
)
declare -A module_dir=(
    [capi-manager]=capi [capi-kubeadm-bootstrap]=capi [capi-kubeadm-control-plane]=capi [capi-inmemory]=capi
)
names=(metrics-server alertmanager helm capi-manager capi-kubeadm-bootstrap capi-kubeadm-control-plane capi-inmemory)

module_of() { echo "${module_dir[$1]:-$1}"; }

module_version() {  # the version tools/kube/<module>/go.mod pins for a module
    awk -v m="$2" '$1 == m {print $2; exit}' "$here/$1/go.mod"
}

# Flags an add-on's own release build sets: helm's version, and the Kubernetes version it assumes
# without a cluster (`helm template`, `helm lint`), from the client-go it is built with (as helm's Makefile).
addon_ldflags() {
    case "$1" in
        helm)
            local k8s; k8s="$(module_version helm k8s.io/client-go)"; k8s="${k8s#v0.}"; k8s="${k8s%%.*}"
            echo "$ldflags -X helm.sh/helm/v3/internal/version.version=$(module_version helm helm.sh/helm/v3)" \
                "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s" \
                "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s" ;;
        capi-*)
            local v; v="$(module_version capi sigs.k8s.io/cluster-api)"; local mm="${v#v}"
            echo "$ldflags -X sigs.k8s.io/cluster-api/version.gitVersion=$v -X sigs.k8s.io/cluster-api/version.gitMajor=${mm%%.*}" \
                "-X sigs.k8s.io/cluster-api/version.gitMinor=$(echo "$mm" | cut -d. -f2) -X sigs.k8s.io/cluster-api/version.gitTreeState=clean" ;;
        *) echo "$ldflags" ;;
    esac
}

addon_key() {  # Kept in sync with clusters/sandbox/binaries.py (addon_path).
    local name="$1"
    {
        cat "$here/$(module_of "$name")/go.mod" "$here/$(module_of "$name")/go.sum"
        echo "${package[$name]} $(addon_ldflags "$name")"
        "$go" env GOVERSION
    } | sha256sum | cut -c1-16
}

addon_bin() {
    echo "$cache_root/addons/$1-$(addon_key "$1")/bin/$1"
}

# Cluster API's CRDs and webhook configurations, from the pinned modules' config/ folders, kept beside
# the binaries (keyed like capi-manager) so a sandbox needs neither Go nor the module cache to install them.
capi_config_dir() {
    echo "$cache_root/addons/capi-config-$(addon_key capi-manager)"
}

capi_config() {
    local dest; dest="$(capi_config_dir)"
    [[ -f "$dest/.complete" ]] && { echo "kube-tools: capi config up to date in $dest"; return; }
    local core test
    core="$(cd "$here/capi" && "$go" list -m -f '{{.Dir}}' sigs.k8s.io/cluster-api)"
    test="$(cd "$here/capi" && "$go" list -m -f '{{.Dir}}' sigs.k8s.io/cluster-api/test)"
    rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
    local provider src
    for provider in core:"$core/core" bootstrap-kubeadm:"$core/bootstrap/kubeadm" \
            control-plane-kubeadm:"$core/controlplane/kubeadm" infrastructure-inmemory:"$test/infrastructure/docker"; do
        src="${provider#*:}/config"
        mkdir -p "$dest.tmp/${provider%%:*}"
        cp -r "$src/crd" "$src/webhook" "$dest.tmp/${provider%%:*}/"
    done
    chmod -R u+w "$dest.tmp" && touch "$dest.tmp/.complete"
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
    echo "kube-tools: capi config (CRDs, webhooks) copied to $dest"
}

case "${1:-}" in
    --print-bin)
        [[ -n "${package[${2:-}]:-}" ]] || { echo "usage: $0 --print-bin {${names[*]}}" >&2; exit 2; }
        addon_bin "$2"; exit 0 ;;
    --print-capi-config) capi_config_dir; exit 0 ;;
    "") ;;
    *) echo "usage: $0 [--print-bin NAME|--print-capi-config]" >&2; exit 2 ;;
esac

total=$SECONDS
for name in "${names[@]}"; do
    bin="$(addon_bin "$name")"
    if [[ -x "$bin" ]]; then
        echo "kube-tools: $name up to date in $(dirname "$bin")"
        continue
    fi
    mkdir -p "$(dirname "$bin")"
    exec 9>"$(dirname "$(dirname "$bin")")/.lock"
    flock 9  # one build per key at a time; a second waits, then finds the work done
    if [[ ! -x "$bin" ]]; then
        started=$SECONDS
        echo "kube-tools: building $name (${package[$name]}) ..."
        (cd "$here/$(module_of "$name")" && "$go" build -trimpath -ldflags "$(addon_ldflags "$name")" -o "$bin.tmp" "${package[$name]}")
        mv "$bin.tmp" "$bin"
        echo "kube-tools: built $name in $((SECONDS - started))s: $bin"
    fi
    exec 9>&-
done
capi_config
echo "kube-tools: add-ons done in $((SECONDS - total))s"
