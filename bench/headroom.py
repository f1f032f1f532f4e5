#!/usr/bin/env python3
"""bench/headroom.sh's arithmetic: the allocator's share of the instructions
in callgrind profiles, and the table of headroom bounds.

usage: headroom.py share LIBRARY CALLGRIND_FILE...
       headroom.py table CSV MARKDOWN

share prints one line, "allocator_ir=N total_ir=N nested_unsure_ir=N
processes=N", summed over the files, and one line per file on stderr.
A process may leave several files (headroom.sh dumps before each fork, so
that a child does not start with a copy of its parent's counts); each
holds what ran since the previous one, so they add up.

How the allocator's instructions are counted.  Callgrind records, per
function, the instructions it executed itself (self cost) and, per call
arc caller -> callee, the instructions executed between the call and its
return, callees included (the arc's inclusive cost).  Every instruction run
on the allocator's behalf lies below an arc that enters LIBRARY from another
object: a program's call of malloc, free, operator new..., the dynamic
linker's call of the library's constructor, libc's call of its fork or exit
handlers.  The sum of the inclusive costs of those entry arcs counts each
such instruction once, callees in other objects (memcpy for realloc, the
system call wrappers, not the kernel) included, unless the allocator was
re-entered from inside itself: LIBRARY -> libc -> LIBRARY (dl_iterate_phdr
calling back, a libc function that calls malloc).  Such a nested entry is
counted once more inside the outer one, so its arc is taken out.  An arc
whose caller only ever runs below LIBRARY (every path to it comes from
LIBRARY) is surely nested and taken out; an arc whose caller is reached both
from LIBRARY and from elsewhere cannot be told apart in the profile: it is
kept, which can only overstate the allocator's share, and its cost is
reported as nested_unsure_ir.  As a check of the reading, the same figure is
computed a second way, the library's self cost plus the inclusive cost of
its calls into other objects, which double-counts exactly the same nested
entries: the two must agree.

Recursion inside LIBRARY never enters it from outside, so it adds no entry
arc and needs no care.
"""
import csv
import math
import os
import re
import sys

NAME_REF = re.compile(r"^\((\d+)\)(?: (.*))?$")


class Profile:
    """One callgrind output file: self costs per function, call arcs, total."""

    def __init__(self, path):
        self.path = path
        self.total = None
        self.pid = None
        self.cmd = ""
        self.object_of = {}   # function id -> object name
        self.self_cost = {}   # function id -> instructions
        self.arcs = {}        # (caller id, callee id) -> inclusive instructions
        self._read()

    def _read(self):
        names = {"ob": {}, "fl": {}, "fn": {}}
        current_object = current_function = None
        callee = None
        call_pending = False
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line.startswith("#"):
                    continue
                first = line[0]
                if first.isdigit() or first in "+-*":
                    fields = line.split()
                    cost = int(fields[-1]) if len(fields) >= 2 else 0
                    if call_pending:
                        key = (current_function, callee)
                        self.arcs[key] = self.arcs.get(key, 0) + cost
                        call_pending = False
                    else:
                        self.self_cost[current_function] = self.self_cost.get(current_function, 0) + cost
                    continue
                key, sep, value = line.partition("=")
                if sep and key in ("ob", "cob", "fl", "fi", "fe", "cfi", "cfl", "fn", "cfn"):
                    kind = {"ob": "ob", "cob": "ob", "fn": "fn", "cfn": "fn"}.get(key, "fl")
                    ident = self._name(names[kind], value)
                    if key == "ob":
                        current_object = ident
                    elif key == "fn":
                        current_function = ident
                        # A function id names one function of one object.
                        known = self.object_of.setdefault(ident, current_object)
                        if known != current_object:
                            raise ValueError(f"{self.path}: function {ident} in two objects")
                    elif key == "cfn":
                        callee = ident
                    continue
                if line.startswith("calls="):
                    call_pending = True
                elif line.startswith(("summary:", "totals:")):
                    self.total = int(line.split(":", 1)[1].split()[0])
                elif line.startswith("pid:"):
                    self.pid = line.split(":", 1)[1].strip()
                elif line.startswith("cmd:"):
                    self.cmd = line.split(":", 1)[1].strip()
        # Objects are stored by id: keep their names.
        self.object_name = {ident: names["ob"].get(ob, ob) for ident, ob in self.object_of.items()}
        if self.total is None:
            raise ValueError(f"{self.path}: no summary or totals line")

    @staticmethod
    def _name(table, value):
        """The id of a compressed name ("(12) text" defines, "(12)" refers);
        an uncompressed name is its own id."""
        m = NAME_REF.match(value)
        if not m:
            return value
        ident, text = m.group(1), m.group(2)
        if text is not None:
            table[ident] = text
        return ident

    def allocator_cost(self, library):
        """(allocator instructions, unsure nested instructions, the same
        figure counted the other way)."""
        inside = {fn for fn, ob in self.object_name.items() if os.path.basename(ob) == library}
        callers_of, callees_of = {}, {}
        for (caller, callee) in self.arcs:
            callers_of.setdefault(callee, set()).add(caller)
            callees_of.setdefault(caller, set()).add(callee)
        # Functions of other objects that run below the library.
        below = set()
        stack = [c for fn in inside for c in callees_of.get(fn, ()) if c not in inside]
        while stack:
            fn = stack.pop()
            if fn in below:
                continue
            below.add(fn)
            stack.extend(c for c in callees_of.get(fn, ()) if c not in inside and c not in below)
        # Those that run nowhere else: every caller is the library or one of them.
        only_below = set(below)
        changed = True
        while changed:
            changed = False
            for fn in list(only_below):
                if any(c not in inside and c not in only_below for c in callers_of.get(fn, ())):
                    only_below.discard(fn)
                    changed = True
        entries = sure_nested = unsure_nested = 0
        calls_out = 0
        for (caller, callee), cost in self.arcs.items():
            if callee in inside and caller not in inside:
                entries += cost
                if caller in only_below:
                    sure_nested += cost
                elif caller in below:
                    unsure_nested += cost
            elif caller in inside and callee not in inside:
                calls_out += cost
        own = sum(self.self_cost.get(fn, 0) for fn in inside)
        return entries - sure_nested, unsure_nested, own + calls_out - sure_nested


def share(library, files):
    library = os.path.basename(library)
    allocator = total = unsure = 0
    disagreement = 0
    pids = set()
    for path in files:
        p = Profile(path)
        pids.add(p.pid)
        mine, maybe, other_way = p.allocator_cost(library)
        allocator += mine
        total += p.total
        unsure += maybe
        disagreement = max(disagreement, abs(mine - other_way) / max(p.total, 1))
        print(f"pid={p.pid} total_ir={p.total} allocator_ir={mine} nested_unsure_ir={maybe} "
              f"self_plus_calls_out_ir={other_way} cmd={p.cmd[:160]}", file=sys.stderr)
    # The two ways of counting the same instructions must agree: if they do
    # not, the profile was not read the way its format says.
    if disagreement > 0.001:
        print(f"headroom.py: the two counts differ by {100 * disagreement:.3f}% of a process's "
              "instructions: profile misread", file=sys.stderr)
        return 1
    print(f"allocator_ir={allocator} total_ir={total} nested_unsure_ir={unsure} processes={len(pids)}")
    return 0


def geometric_mean(values):
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def table(csv_path, md_path):
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    lines = [
        "## Headroom: the most any allocator setting could change, per item",
        "",
        "Learning off (hakmem-baseline), one run each.  *instr %*: instructions inside the allocator "
        "(its entry points and all they call, memcpy and system call wrappers included, not the "
        "kernel) of all the item's instructions, every process summed (callgrind).  *sys %*: "
        "system time of CPU time (bench/measure), all of it counted as the allocator's.  *time "
        "bound* = 1 - (instr + sys): the share of CPU time a zero-cost allocator would leave; it "
        "ignores cache effects of placement.  *peak live*: the most bytes requested and not yet "
        "freed at once, in the process where that is largest (bench/headroom_shim.so).  *live / "
        "RSS*: peak live / peak RSS, the peak RSS a heap with no overhead would leave if all "
        "non-heap memory could go too, an overstatement of the headroom.  *non-heap*: resident "
        "pages no allocator decides, sampled as live bytes grow and at exit: the process's files "
        "(code, data, files it maps), its main stack, and the anonymous memory it maps itself "
        "(gcc's collected heap), at the sample where they and the live bytes summed most; *RSS "
        "floor* = that sum (in the process where it is largest) / peak RSS, the same bound with "
        "those pages kept.  Thread stacks, libc's own mappings and the allocator's metadata still "
        "count as reducible, so this too overstates the headroom.",
        "",
        "| item | args | instr % | sys % | time bound | peak RSS KB | peak live KB | process | "
        "live / RSS | non-heap KB | RSS floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    time_bounds, rss_bounds, floors, bad = [], [], [], []
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    for r in rows:
        instr, sys_share = number(r["instr_share"]), number(r["sys_share"])
        rss, live = number(r["maxrss_kb"]), number(r["peak_live_bytes"])
        floor, fixed = number(r["floor_bytes"]), number(r["floor_fixed_bytes"])
        time_bound = 1 - (instr + sys_share) if instr is not None and sys_share is not None else None
        rss_bound = live / 1024 / rss if live is not None and rss else None
        floor_bound = floor / 1024 / rss if floor is not None and rss else None
        time_bounds.append(time_bound)
        rss_bounds.append(rss_bound)
        floors.append(floor_bound)
        if r["status"] != "ok":
            bad.append(f"{r['item']}: {r['status']}")
        args = r["args"] + ("" if r["cg_args"] == r["args"] else f" (callgrind: {r['cg_args']})")
        lines.append(
            f"| {r['item']} | {args} | {fmt(instr and 100 * instr, '.2f')} | "
            f"{fmt(sys_share and 100 * sys_share, '.2f')} | {fmt(time_bound, '.3f')} | {fmt(rss, '.0f')} | "
            f"{fmt(live and live / 1024, '.0f')} | {r['peak_live_exe'] or '-'} | {fmt(rss_bound, '.3f')} | "
            f"{fmt(fixed and fixed / 1024, '.0f')} | {fmt(floor_bound, '.3f')} |")
    means = [geometric_mean(v) for v in (time_bounds, rss_bounds, floors)]
    counted = [sum(1 for v in values if v) for values in (time_bounds, rss_bounds, floors)]
    gm = lambda v: "-" if v is None else f"{v:.3f}"
    lines += [
        f"| **geometric mean** | | | | **{gm(means[0])}** | | | | **{gm(means[1])}** | | **{gm(means[2])}** |",
        "",
        f"Geometric means over {counted[0]} items (time), {counted[1]} (live / RSS) and {counted[2]} "
        "(RSS floor).  Learning could make the suite 5% faster only if the time bound's mean were "
        "below 0.95, and 10% leaner only if the RSS floor's mean were below 0.90.",
    ]
    if bad:
        lines += ["", "Items that did not measure cleanly: " + "; ".join(bad) + "."]
    text = "\n".join(lines) + "\n"
    with open(md_path, "w") as f:
        f.write(text)
    sys.stdout.write(text)
    print(f"headroom: geometric means: time bound {gm(means[0])}, live / RSS {gm(means[1])}, "
          f"RSS floor {gm(means[2])}")
    return 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "share":
        return share(argv[2], argv[3:])
    if len(argv) == 4 and argv[1] == "table":
        return table(argv[2], argv[3])
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
