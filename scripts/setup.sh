#!/usr/bin/env bash
# Installs what building and testing orderflow needs, from Debian 12 packages only.
# Idempotent and quiet when everything is present; needs root (or sudo) to install.
set -euo pipefail

packages=(
  build-essential cmake g++ make pkg-config
  librocksdb-dev libsnappy-dev liblz4-dev libzstd-dev zlib1g-dev libbz2-dev libsimdjson-dev libboost-dev libcli11-dev libgtest-dev libjemalloc-dev prometheus-cpp-dev liburing-dev
  python3 curl ca-certificates procps prometheus chromium
)

# `setup.sh bench`: also what `make bench` measures against.
if [ "${1:-}" = "bench" ]; then
  packages+=(postgresql nginx-light wrk)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
install_missing() {
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Packages such as postgresql, nginx and prometheus start system services on install; we
  # only need their binaries (tests and benchmarks start their own instances on loopback).
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    added_policy=1
  fi
  trap '[ "$added_policy" = 1 ] && $SUDO rm -f "$policy"' EXIT
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

[ ${#missing[@]} -eq 0 ] || install_missing
# The release build's RocksDB, built once from Debian's source.
bash "$(dirname "$0")/build-rocksdb.sh"
