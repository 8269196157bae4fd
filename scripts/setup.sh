#!/usr/bin/env bash
# Installs what building and testing orderflow needs, from Debian 12 packages only.
# Idempotent and quiet when everything is present; needs root (or sudo) to install.
set -euo pipefail

packages=(
  build-essential cmake g++ make pkg-config
  librocksdb-dev libsimdjson-dev libboost-dev libcli11-dev libgtest-dev prometheus-cpp-dev
  python3 curl ca-certificates procps
)

# `setup.sh bench`: also what `make bench` measures against.
if [ "${1:-}" = "bench" ]; then
  packages+=(postgresql nginx-light wrk)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
