"""The allocator suite against its targets: the verdicts analyze_suite.py
adds to table.md (and readme_tables.py to the README).

Each target compares two configurations item by item through the ratios of
their runs taken in the same measured run (analyze_suite.Suite), and says
both what the median says and whether the runs show it: a one-sided 95%
bound of the ratios' geometric mean (Student's t over their logarithms)
on the same side of the limit as the median.  "within noise" marks a
verdict the runs do not show, either way.

The targets:
  - learning off, every item: wall time at most the fastest other
    allocator's (glibc, jemalloc, mimalloc, tcmalloc, the one with the
    lowest median wall time against glibc), peak RSS at most RSS_SLACK x
    glibc's;
  - learning on against learning off, over the suite: peak RSS at least
    10% lower at no worse wall time, or wall time at least 5% lower at no
    worse peak RSS (geometric means), and no item more than 5% worse on
    either;
  - learning on against the others, over the suite: wall time at most
    every one's, peak RSS at most glibc's (geometric means).

And how far the learning target lies: the geometric mean over the items of
the best median any measured allocator reached on each item, against
learning off's, for wall time and for peak RSS apart (each its own best
allocator, so a bound on what choosing an allocator per item could give,
not a point any one choice reaches).
"""
import statistics

from analyze_suite import PEERS, WORSE, geomean, lower_bound

RSS_SLACK = 1.05        # peak RSS may exceed glibc's by this factor
LEANER = 0.90           # learning pays: peak RSS this far below ...
FASTER = 0.95           # ... or wall time this far below learning off's
OTHERS = ["system"] + PEERS


def upper_bound(ratios):
    """The one-sided 95% upper bound of the ratios' geometric mean, or None
    for fewer than 3."""
    if len(ratios) < 3:
        return None
    return 1.0 / lower_bound([1.0 / r for r in ratios])


def verdict(ratios, limit):
    """(median, word) for ratios that should be at most limit."""
    med = statistics.median(ratios)
    if med <= limit:
        hi = upper_bound(ratios)
        return med, "PASS" if hi is not None and hi <= limit else "PASS (within noise)"
    lo = lower_bound(ratios)
    return med, "**MISS**" if lo is not None and lo > limit else "**MISS** (within noise)"


def name(config):
    return "glibc" if config == "system" else config


def fastest_other(suite, item):
    """The other allocator with the lowest median wall time against glibc
    on this item (glibc itself at 1), or None when none ran it."""
    best, best_ratio = None, None
    for c in OTHERS:
        if c not in suite.configs or not suite.ok.get((item, c)):
            continue
        r = 1.0 if c == "system" else suite.paired(item, c, "system", "wall_s")
        if r is not None and (best_ratio is None or r < best_ratio):
            best, best_ratio = c, r
    return best


def core_table(suite, config="hakmem-baseline"):
    L = [f"**{config}, every item**: wall time at most the fastest other allocator's (the one with the lowest "
         f"median against glibc), peak RSS at most {RSS_SLACK:.2f}x glibc's. Cells: median of the per-run "
         f"ratios; PASS or **MISS** by the median, *within noise* when the one-sided 95% bound of the ratios' "
         f"geometric mean (Student's t over {suite.meta.get('suite_runs', '?')} runs' logarithms) falls on the "
         f"other side of the limit.", "",
         "| item | fastest other | wall time / its | | peak RSS / glibc's | |",
         "|---|---|---:|---|---:|---|"]
    misses = []
    for it in suite.items:
        if not suite.ok.get((it, config)):
            L.append(f"| {it} | — | no run of {config} | | | |")
            misses += [f"{it} (wall time)", f"{it} (peak RSS)"]
            continue
        row = [it]
        other = fastest_other(suite, it)
        wall = suite.paired_ratios(it, config, other, "wall_s") if other else []
        if wall:
            med, word = verdict(wall, 1.0)
            row += [name(other), f"{med:.3f}", word]
            if "MISS" in word:
                misses.append(f"{it} (wall time)")
        else:
            row += ["—", "—", ""]
        rss = suite.paired_ratios(it, config, "system", "maxrss_kb") if "system" in suite.configs else []
        if rss:
            med, word = verdict(rss, RSS_SLACK)
            row += [f"{med:.3f}", word]
            if "MISS" in word:
                misses.append(f"{it} (peak RSS)")
        else:
            row += ["—", ""]
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append(f"{len(suite.items) * 2 - len(misses)} of {len(suite.items) * 2} targets met by the median"
             + (f"; missed: {', '.join(misses)}." if misses else "."))
    L.append("")
    return L


def gm_paired(suite, a, b, field):
    """Geometric mean over the items of the median a/b ratio, and how many
    items had one."""
    vals = [suite.paired(it, a, b, field) for it in suite.items]
    vals = [v for v in vals if v]
    return geomean(vals), len(vals)


def learning_lines(suite):
    if not all(c in suite.configs for c in ("hakmem-learning", "hakmem-baseline")):
        return []
    L = ["**hakmem-learning against hakmem-baseline and the others** (geometric means over the items of the "
         "median per-run ratios):", ""]
    n = len(suite.items)
    wall, nw = gm_paired(suite, "hakmem-learning", "hakmem-baseline", "wall_s")
    rss, nr = gm_paired(suite, "hakmem-learning", "hakmem-baseline", "maxrss_kb")
    if wall is None or rss is None:
        return L + ["- **MISS** learning pays: no item ran under both", ""]
    pays = (rss <= LEANER and wall <= 1.0) or (wall <= FASTER and rss <= 1.0)
    part = "" if nw == n and nr == n else f" ({min(nw, nr)} of {n} items)"
    L.append(f"- {'PASS' if pays else '**MISS**'} learning pays: wall time {wall:.3f}, peak RSS {rss:.3f} of "
             f"learning off's{part} (target: peak RSS at most {LEANER:.2f} at wall time at most 1, or wall time "
             f"at most {FASTER:.2f} at peak RSS at most 1)")
    worse = []
    for it in suite.items:
        for field, label in (("wall_s", "wall time"), ("maxrss_kb", "peak RSS")):
            rs = suite.paired_ratios(it, "hakmem-learning", "hakmem-baseline", field)
            if rs and statistics.median(rs) > WORSE:
                lo = lower_bound(rs)
                shown = "shown" if lo is not None and lo > WORSE else "within noise"
                worse.append(f"{it} {label} {statistics.median(rs):.3f} ({shown})")
    L.append(f"- {'PASS' if not worse else '**MISS**'} no item more than {round((WORSE - 1) * 100)}% worse with "
             f"learning on" + (f": {', '.join(worse)}" if worse else ""))
    own, _ = gm_paired(suite, "hakmem-learning", "system", "wall_s")
    peers = []
    for c in PEERS:
        if c in suite.configs:
            g, _ = gm_paired(suite, c, "system", "wall_s")
            if g is not None:
                peers.append((c, g))
    if own is not None and peers:
        beaten = [f"{c} {g:.3f}" for c, g in peers if g < own]
        L.append(f"- {'PASS' if not beaten else '**MISS**'} wall time at most every other allocator's: "
                 f"{own:.3f}x glibc against " + ", ".join(f"{c} {g:.3f}" for c, g in peers))
    own_rss, _ = gm_paired(suite, "hakmem-learning", "system", "maxrss_kb")
    if own_rss is not None:
        L.append(f"- {'PASS' if own_rss <= 1.0 else '**MISS**'} peak RSS at most glibc's: {own_rss:.3f}x")
    L.append("")
    return L


def per_item_best(suite, field, base="hakmem-baseline"):
    """(geometric mean, {config: items it was best on}) of each item's
    lowest median config/base ratio among base and the other allocators,
    or (None, {}) when no item ran under base."""
    best, wins = [], {}
    for it in suite.items:
        if not suite.ok.get((it, base)):
            continue
        low, who = 1.0, base
        for c in OTHERS:
            if c in suite.configs and suite.ok.get((it, c)):
                r = suite.paired(it, c, base, field)
                if r is not None and r < low:
                    low, who = r, c
        best.append(low)
        wins[who] = wins.get(who, 0) + 1
    return geomean(best), wins


def reach_lines(suite, base="hakmem-baseline"):
    parts = []
    for field, label in (("wall_s", "wall time"), ("maxrss_kb", "peak RSS")):
        g, wins = per_item_best(suite, field, base)
        if g is None:
            return []
        who = ", ".join(f"{name(c)} {n}" for c, n in sorted(wins.items(), key=lambda kv: (-kv[1], kv[0])))
        parts.append(f"{label} {g:.3f} (best on items: {who})")
    return [f"**How far choosing per item could go**: each item on whichever allocator measured here "
            f"({base} and the others) was best on it, against {base}, in geometric mean over the items: "
            + "; ".join(parts) + f". Learning must reach peak RSS {LEANER:.2f} or wall time {FASTER:.2f}; "
            "each figure takes its own best allocator per item, so no single choice reaches both.", ""]


def section(suite):
    if "hakmem-baseline" not in suite.configs or not suite.items:
        return None
    return core_table(suite) + learning_lines(suite) + reach_lines(suite)

