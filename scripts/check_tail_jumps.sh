#!/usr/bin/env bash
# Fails the build of a library whose malloc reaches its slow paths by a
# call rather than a tail jump.  The slow paths take the return address as
# the allocation's call site: through a jump it is malloc's caller, through
# a call it would be malloc itself, and every allocation would be charged
# to one site.  GCC makes these jumps at -O2; an OPT without them (-O0, -Og,
# -fno-optimize-sibling-calls) must fail here rather than build a library
# that learns nothing.
# usage: scripts/check_tail_jumps.sh LIBRARY
set -u -o pipefail
lib=$1
dis=$(objdump -d --no-show-raw-insn "$lib") || { echo "check_tail_jumps: cannot disassemble $lib" >&2; exit 1; }
case $(uname -m) in
  aarch64) call='bl' jump='b' ;;
  *) call='call' jump='jmp' ;;
esac
calls=$(grep -cE "[[:space:]]$call[[:space:]]+[0-9a-f]+ <[a-z_]+_tail>" <<<"$dis")
jumps=$(grep -cE "[[:space:]]$jump[[:space:]]+[0-9a-f]+ <[a-z_]+_tail>" <<<"$dis")
if [ "$calls" -gt 0 ] || [ "$jumps" -lt 3 ]; then
  echo "$lib: malloc calls its slow paths instead of jumping to them ($calls calls, $jumps jumps): every allocation would be charged to malloc's own site; build with OPT=-O2 (or add -foptimize-sibling-calls)" >&2
  rm -f "$lib"
  exit 1
fi
