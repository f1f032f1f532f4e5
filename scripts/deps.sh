#!/usr/bin/env bash
# Installs the Debian packages hakmem needs, only those that are missing.
# Quiet when everything is present; idempotent. Run as root on Debian 12.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config
  libcmocka-dev liburcu-dev libprotobuf-c-dev protobuf-c-compiler
  libsystemd-dev systemd systemd-container
  python3 libpython3.11-testsuite git sqlite3 perl coreutils procps
  libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4
  gnuplot-nox valgrind
  clang libclang-rt-14-dev
  prometheus man-db
  clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages and not root; install them: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
