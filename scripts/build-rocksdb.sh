#!/usr/bin/env bash
# Builds RocksDB 7.8.3 — the version Debian 12 ships, from Debian's own source package — as an
# optimized static library for orderflow's release build, into $ORDERFLOW_ROCKSDB_PREFIX
# (default /opt/orderflow/rocksdb-7.8.3, where CMakeLists.txt looks for it).
#
# Why: Debian builds RocksDB with CMAKE_BUILD_TYPE=None, i.e. without -DNDEBUG, so its
# assertions and test sync points run on every read and write, and portable, so its CRC32C
# is the table-driven one. Here: -O3 -DNDEBUG, SSE4.2 and PCLMUL for CRC32C (any x86-64
# server CPU since 2010). docs/performance.md has what it buys.
#
# Idempotent (nothing to do once the library is there); about 6 minutes on 2 cores the first
# time. Needs the Debian archive (deb.debian.org), as apt does. On failure the release build
# falls back to Debian's librocksdb.a (CMakeLists.txt says so when it configures).
set -euo pipefail

version=7.8.3
prefix=${ORDERFLOW_ROCKSDB_PREFIX:-/opt/orderflow/rocksdb-$version}
stamp="$prefix/.built-by-orderflow-1"
[ -f "$stamp" ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
work=$(mktemp -d /tmp/orderflow-rocksdb.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "setup: building RocksDB $version without assertions (once; about 6 minutes on 2 cores)"

# Debian's source package, fetched and verified by apt against the archive's signed indexes,
# with lists of our own (the system's apt configuration is left as it is).
mkdir -p "$work/lists/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" \
  >"$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
if ! (cd "$work" && $SUDO apt-get "${apt_opts[@]}" -qq update >/dev/null &&
      $SUDO apt-get "${apt_opts[@]}" -qq source --download-only rocksdb >/dev/null 2>&1) ||
   [ ! -f "$work/rocksdb_$version.orig.tar.gz" ]; then
  echo "setup: WARNING: could not fetch Debian's rocksdb $version source; the release build" \
       "will use Debian's librocksdb.a (slower: built with assertions)" >&2
  exit 0
fi
tar -xzf "$work/rocksdb_$version.orig.tar.gz" -C "$work"

cmake -S "$work/rocksdb-$version" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DUSE_RTTI=ON -DPORTABLE=ON -DFORCE_SSE42=ON -DFAIL_ON_WARNINGS=OFF \
  -DROCKSDB_BUILD_SHARED=OFF -DWITH_GFLAGS=OFF -DWITH_JEMALLOC=OFF \
  -DWITH_TESTS=OFF -DWITH_TOOLS=OFF -DWITH_CORE_TOOLS=OFF -DWITH_BENCHMARK_TOOLS=OFF \
  -DWITH_SNAPPY=ON -DWITH_LZ4=ON -DWITH_ZSTD=ON -DWITH_ZLIB=ON -DWITH_BZ2=ON >"$work/cmake.log" 2>&1 ||
  { cat "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/build" --target rocksdb -j"${JOBS:-2}" >"$work/build.log" 2>&1 ||
  { tail -50 "$work/build.log" >&2; exit 1; }

$SUDO rm -rf "$prefix"
$SUDO mkdir -p "$prefix/lib"
$SUDO cp "$work/build/librocksdb.a" "$prefix/lib/"
$SUDO cp -r "$work/rocksdb-$version/include" "$prefix/"
$SUDO touch "$stamp"
echo "setup: RocksDB $version installed in $prefix"
