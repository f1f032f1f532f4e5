#!/usr/bin/env bash
# The Debian packages hakmem needs, in two lists: what building the product
# (`make`, `make install`) needs, and what the tests, benchmarks and demo
# add.  Run as root on Debian 12.
#   deps.sh                 installs every missing package (quiet when none
#                           is missing; what `make deps` runs)
#   deps.sh --missing build prints the missing build packages on one line
#                           (nothing when none is, or when this is no
#                           Debian: there is no dpkg to ask)
set -euo pipefail

BUILD_PACKAGES=(
  build-essential liburcu-dev libprotobuf-c-dev protobuf-c-compiler libsystemd-dev
  libcurl4-openssl-dev libjson-c-dev
)
TEST_PACKAGES=(
  pkg-config libcmocka-dev
  systemd systemd-container
  python3 libpython3.11-testsuite git sqlite3 perl coreutils procps
  libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4
  gnuplot-nox valgrind
  clang libclang-rt-14-dev
  prometheus man-db
  etcd-server etcd-client openssl
)

missing_of() {
  local p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || echo "$p"
  done
}

if [ "${1:-}" = --missing ]; then
  [ "${2:-}" = build ] || { echo "usage: deps.sh [--missing build]" >&2; exit 2; }
  command -v dpkg-query >/dev/null || exit 0
  missing_of "${BUILD_PACKAGES[@]}" | tr '\n' ' ' | sed 's/ $//'
  exit 0
fi

mapfile -t missing < <(missing_of "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}")
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages and not root; install them: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
