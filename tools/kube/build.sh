#!/usr/bin/env bash
# Builds the pinned Kubernetes control plane, etcd and kwok into a cache outside the repository:
#   ${CORRAL_KUBE_CACHE:-$HOME/.cache/corral/kube}/<key>/bin
# The key hashes the pins (both go.mod/go.sum pairs), this script and the Go version, so changing any of
# them builds into a fresh directory and an unchanged tree is a no-op.
#
#   bash tools/kube/build.sh                 build if needed (make kube-tools)
#   bash tools/kube/build.sh --print-bin-dir print the bin directory for the current pins, build nothing
#   bash tools/kube/build.sh --print-key     print only the key
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
go="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$go" ]]; then
    echo "kube-tools: Go toolchain not found (set GO=/path/to/go or put go on PATH)" >&2
    exit 1
fi

# Kept in sync with clusters/sandbox/binaries.py, which computes the same key without running Go.
kube_version="v1.36.3"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

cache_key() {
    # The Go version is part of the key; Python reads it from `go env GOVERSION` the same way.
    {
        cat "$here/go.mod" "$here/go.sum" "$here/kwok/go.mod" "$here/kwok/go.sum" "$here/build.sh"
        "$go" env GOVERSION
    } | sha256sum | cut -c1-16
}

cache_root="${CORRAL_KUBE_CACHE:-$HOME/.cache/corral/kube}"
key="$(cache_key)"
bin_dir="$cache_root/$key/bin"

case "${1:-}" in
    --print-bin-dir) echo "$bin_dir"; exit 0 ;;
    --print-key) echo "$key"; exit 0 ;;
    "") ;;
    *) echo "usage: $0 [--print-bin-dir|--print-key]" >&2; exit 2 ;;
esac

all_built() {
    local name
    for name in "${binaries[@]}"; do
        [[ -x "$bin_dir/$name" ]] || return 1
    done
}

if all_built; then
    echo "kube-tools: up to date in $bin_dir"
    exit 0
fi

mkdir -p "$cache_root/$key"
# One build at a time per key: a second `make kube-tools` waits, then finds the work done.
exec 9>"$cache_root/$key/.lock"
flock 9
if all_built; then
    echo "kube-tools: up to date in $bin_dir"
    exit 0
fi

staging="$cache_root/$key/bin.partial"
mkdir -p "$staging"
ldflags_k8s="-s -w"
for kv in "gitVersion=$kube_version" "gitMajor=1" "gitMinor=36" "gitTreeState=clean"; do
    ldflags_k8s+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done

build() {  # build <name> <module dir> <package> <ldflags>
    local name="$1" dir="$2" pkg="$3" ldflags="$4" started
    if [[ -x "$staging/$name" ]]; then
        echo "kube-tools: $name already built"
        return
    fi
    started=$SECONDS
    echo "kube-tools: building $name ($pkg) ..."
    (cd "$dir" && "$go" build -trimpath -ldflags "$ldflags" -o "$staging/$name.tmp" "$pkg")
    mv "$staging/$name.tmp" "$staging/$name"
    echo "kube-tools: built $name in $((SECONDS - started))s"
}

total=$SECONDS
echo "kube-tools: building Kubernetes $kube_version, etcd and kwok into $bin_dir (cold builds take a while)"
build etcd "$here" go.etcd.io/etcd/server/v3 "-s -w"
build kubectl "$here" k8s.io/kubernetes/cmd/kubectl "$ldflags_k8s"
build kube-scheduler "$here" k8s.io/kubernetes/cmd/kube-scheduler "$ldflags_k8s"
build kube-controller-manager "$here" k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags_k8s"
build kube-apiserver "$here" k8s.io/kubernetes/cmd/kube-apiserver "$ldflags_k8s"
build kwok "$here/kwok" sigs.k8s.io/kwok/cmd/kwok "-s -w"

rm -rf "$bin_dir"
mv "$staging" "$bin_dir"
echo "kube-tools: done in $((SECONDS - total))s: $bin_dir"
