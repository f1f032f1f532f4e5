#!/usr/bin/env bash
# Installs hakmem: what `make install` runs.
#   PREFIX=/usr/local DESTDIR= bash scripts/install.sh BUILD
# Installs what `make` built: the library (shared and static), the public
# headers, the pkg-config file, hakmemd (sbin), hakmemctl (bin), the man
# pages; and the systemd units, sysusers.d and tmpfiles.d snippets.  Directories may be
# overridden one by one (BINDIR, SBINDIR, LIBDIR, INCLUDEDIR, PKGCONFIGDIR,
# MANDIR, UNITDIR, SYSUSERSDIR, TMPFILESDIR).
#
# With an empty DESTDIR, as root, on a host booted with systemd, it also
# does what a package's postinst would: creates the hakmem user and group
# (systemd-sysusers), the directories (systemd-tmpfiles) and reloads
# systemd.  It never enables or starts anything.
set -euo pipefail

BUILD=${1:-build}
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-$PREFIX/bin}
SBINDIR=${SBINDIR:-$PREFIX/sbin}
LIBDIR=${LIBDIR:-$PREFIX/lib}
INCLUDEDIR=${INCLUDEDIR:-$PREFIX/include}
PKGCONFIGDIR=${PKGCONFIGDIR:-$LIBDIR/pkgconfig}
MANDIR=${MANDIR:-$PREFIX/share/man}
# systemd reads units, sysusers.d and tmpfiles.d from /usr/lib and
# /usr/local/lib as well as /etc, so PREFIX/lib works for both prefixes.
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
SYSUSERSDIR=${SYSUSERSDIR:-$PREFIX/lib/sysusers.d}
TMPFILESDIR=${TMPFILESDIR:-$PREFIX/lib/tmpfiles.d}

cd "$(dirname "$0")/.."
for f in libhakmem.so libhakmem-hardened.so libhakmem.a hakmemd hakmemctl hakmem.pc man/hakmemd.8 man/hakmemctl.1; do
  [ -e "$BUILD/$f" ] || { echo "install: $BUILD/$f missing: run make first" >&2; exit 1; }
done
VERSION=$(sed -n 's/^#define HAKMEM_VERSION "\(.*\)"/\1/p' include/hakmem.h)
[ -n "$VERSION" ] || { echo "install: no HAKMEM_VERSION in include/hakmem.h" >&2; exit 1; }
# make renders hakmem.pc for its PREFIX and LIBDIR; one for other ones
# would send programs to the wrong place.
pc_libdir=$(sed -n 's/^libdir=//p' "$BUILD/hakmem.pc")
if [ "$pc_libdir" != "$LIBDIR" ]; then
  echo "install: $BUILD/hakmem.pc says libdir=$pc_libdir, not $LIBDIR: run make install PREFIX=... (or make PREFIX=... first)" >&2
  exit 1
fi

D=$DESTDIR
install -d "$D$BINDIR" "$D$SBINDIR" "$D$LIBDIR" "$D$INCLUDEDIR" "$D$PKGCONFIGDIR" \
  "$D$MANDIR/man1" "$D$MANDIR/man8" "$D$UNITDIR" "$D$SYSUSERSDIR" "$D$TMPFILESDIR"

install -m 0755 "$BUILD/libhakmem.so" "$D$LIBDIR/libhakmem.so"
install -m 0755 "$BUILD/libhakmem-hardened.so" "$D$LIBDIR/libhakmem-hardened.so"
install -m 0644 "$BUILD/libhakmem.a" "$D$LIBDIR/libhakmem.a"
install -m 0644 include/*.h "$D$INCLUDEDIR/"
install -m 0644 "$BUILD/hakmem.pc" "$D$PKGCONFIGDIR/hakmem.pc"

install -m 0755 "$BUILD/hakmemd" "$D$SBINDIR/hakmemd"
install -m 0755 "$BUILD/hakmemctl" "$D$BINDIR/hakmemctl"

sed "s|@SBINDIR@|$SBINDIR|g" systemd/hakmemd.service.in >"$D$UNITDIR/hakmemd.service"
chmod 0644 "$D$UNITDIR/hakmemd.service"
install -m 0644 systemd/hakmemd.socket "$D$UNITDIR/hakmemd.socket"
install -m 0644 systemd/sysusers.d/hakmem.conf "$D$SYSUSERSDIR/hakmem.conf"
install -m 0644 systemd/tmpfiles.d/hakmem.conf "$D$TMPFILESDIR/hakmem.conf"

install -m 0644 "$BUILD/man/hakmemctl.1" "$D$MANDIR/man1/hakmemctl.1"
install -m 0644 "$BUILD/man/hakmemd.8" "$D$MANDIR/man8/hakmemd.8"

echo "install: hakmem $VERSION installed under ${D}${PREFIX}"
# What a package's postinst would do, on this very host: each step that
# fails is said, and the install fails with it.
failed=0
step() {   # step WHAT COMMAND...
  local what=$1 rc
  shift
  "$@" || { rc=$?; echo "install: $what failed (exit $rc)" >&2; failed=1; }
}
if [ -z "$D" ] && [ "$(id -u)" = 0 ]; then
  command -v systemd-sysusers >/dev/null && step "creating the user and group hakmem (systemd-sysusers)" \
    systemd-sysusers "$SYSUSERSDIR/hakmem.conf"
  command -v systemd-tmpfiles >/dev/null && step "creating /run/hakmem and /var/lib/hakmem (systemd-tmpfiles)" \
    systemd-tmpfiles --create "$TMPFILESDIR/hakmem.conf"
  if [ -d /run/systemd/system ]; then
    step "reloading systemd (systemctl daemon-reload)" systemctl daemon-reload
    echo "install: start it with: systemctl enable --now hakmemd.socket hakmemd.service"
  fi
  command -v ldconfig >/dev/null && step "updating the library cache (ldconfig)" ldconfig
fi
exit $failed
