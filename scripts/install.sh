#!/usr/bin/env bash
# Installs hakmem: what `make install` runs.
#   PREFIX=/usr/local DESTDIR= bash scripts/install.sh BUILD
# Installs the library (shared and static), the public headers, a
# pkg-config file, hakmemd (sbin), hakmemctl (bin), the systemd units, the
# sysusers.d and tmpfiles.d snippets and the man pages.  Directories may be
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
for f in libhakmem.so libhakmem-hardened.so libhakmem.a hakmemd hakmemctl; do
  [ -e "$BUILD/$f" ] || { echo "install: $BUILD/$f missing: run make first" >&2; exit 1; }
done
VERSION=$(sed -n 's/^#define HAKMEM_VERSION "\(.*\)"/\1/p' include/hakmem.h)
[ -n "$VERSION" ] || { echo "install: no HAKMEM_VERSION in include/hakmem.h" >&2; exit 1; }

D=$DESTDIR
install -d "$D$BINDIR" "$D$SBINDIR" "$D$LIBDIR" "$D$INCLUDEDIR" "$D$PKGCONFIGDIR" \
  "$D$MANDIR/man1" "$D$MANDIR/man8" "$D$UNITDIR" "$D$SYSUSERSDIR" "$D$TMPFILESDIR"

install -m 0755 "$BUILD/libhakmem.so" "$D$LIBDIR/libhakmem.so"
install -m 0755 "$BUILD/libhakmem-hardened.so" "$D$LIBDIR/libhakmem-hardened.so"
install -m 0644 "$BUILD/libhakmem.a" "$D$LIBDIR/libhakmem.a"
install -m 0644 include/*.h "$D$INCLUDEDIR/"
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@LIBDIR@|$LIBDIR|g" -e "s|@INCLUDEDIR@|$INCLUDEDIR|g" \
    -e "s|@VERSION@|$VERSION|g" packaging/hakmem.pc.in >"$D$PKGCONFIGDIR/hakmem.pc"
chmod 0644 "$D$PKGCONFIGDIR/hakmem.pc"

install -m 0755 "$BUILD/hakmemd" "$D$SBINDIR/hakmemd"
install -m 0755 "$BUILD/hakmemctl" "$D$BINDIR/hakmemctl"

sed "s|@SBINDIR@|$SBINDIR|g" systemd/hakmemd.service.in >"$D$UNITDIR/hakmemd.service"
chmod 0644 "$D$UNITDIR/hakmemd.service"
install -m 0644 systemd/hakmemd.socket "$D$UNITDIR/hakmemd.socket"
install -m 0644 systemd/sysusers.d/hakmem.conf "$D$SYSUSERSDIR/hakmem.conf"
install -m 0644 systemd/tmpfiles.d/hakmem.conf "$D$TMPFILESDIR/hakmem.conf"

install -m 0644 man/hakmemctl.1 "$D$MANDIR/man1/hakmemctl.1"
install -m 0644 man/hakmemd.8 "$D$MANDIR/man8/hakmemd.8"

echo "install: hakmem $VERSION installed under ${D}${PREFIX}"
if [ -z "$D" ] && [ "$(id -u)" = 0 ]; then
  command -v systemd-sysusers >/dev/null && systemd-sysusers "$SYSUSERSDIR/hakmem.conf" || true
  command -v systemd-tmpfiles >/dev/null && systemd-tmpfiles --create "$TMPFILESDIR/hakmem.conf" || true
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    echo "install: start it with: systemctl enable --now hakmemd.socket hakmemd.service"
  fi
  command -v ldconfig >/dev/null && ldconfig || true
fi
