#!/usr/bin/env bash
# Install the Debian packages Corral needs to build and test, when they are missing and we may.
# Usage: tools/bootstrap.sh [run|test]
set -euo pipefail
want=(gcc libldap2-dev libsasl2-dev redis-server postgresql)
if [ "${1:-run}" = test ]; then
  want+=(slapd ldap-utils chromium chromium-driver docker.io busybox-static openssh-server)
fi
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# python3 -m venv needs ensurepip, which Debian ships separately for its own python3.
if ! python3 -c "import ensurepip" >/dev/null 2>&1; then missing+=(python3-venv); fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
  echo "Corral needs these Debian packages: ${missing[*]}; install them (as root: apt-get install ${missing[*]})" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q "${missing[@]}"; then
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${missing[@]}"
fi
