#!/usr/bin/python3
"""Turns bench/run.sh's results.csv into table.md and the gnuplot input.

usage: analyze.py OUTDIR   (reads OUTDIR/results.csv, suite.csv, meta.txt,
                            failures.txt; writes OUTDIR/table.md, one piece
                            per section in OUTDIR/sections/ (what
                            readme_tables.py puts into README.md),
                            chart-*.dat, chart.gp and the suite's charts)

Every figure is a median over the measured runs of one configuration; ratios
are taken between configurations measured in the same, alternating, run.
"""
import csv
import json
import math
import os
import re
import statistics
import sys

import analyze_suite

SCENARIOS = ["JSON", "MIR", "VM", "MIXED"]
WORKLOADS = ["churn", "prodcons", "server", "realloc", "aligned"]
WORKLOAD_TEXT = {
    "churn": "random 8 B-1 KB per thread",
    "prodcons": "every block freed by another thread",
    "server": "mixed lifetimes, objects outlive their thread",
    "realloc": "string and vector growth",
    "aligned": "posix_memalign / aligned_alloc 16 B-64 KB",
}
# The fast-path table also has libhakmem-hardened.so (run.sh measures it
# beside hakmem-baseline); it is absent from the other tables.
ORDER = analyze_suite.ORDER[:2] + ["hakmem-hardened"] + analyze_suite.ORDER[2:]
FASTPATH_ONLY = ["hakmem-hardened"]
HAKMEM = analyze_suite.HAKMEM
PEERS = analyze_suite.PEERS


def load_published():
    """The published reference run (bench/published.json): per scenario the
    pattern, system -> hakmem medians and the margin hakmem must at least
    match (time saved relative to system), page faults, BigCache hit rate."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "published.json")) as f:
        data = json.load(f)
    pattern, times, faults, extra = {}, {}, {}, {}
    for s, d in data["scenarios"].items():
        pattern[s] = d["pattern"]
        sysns, hakns = float(d["system_ns"]), float(d["hakmem_ns"])
        times[s] = (sysns, hakns, round((sysns - hakns) / sysns * 100.0, 1))
        if "system_faults" in d:
            faults[s] = (int(d["system_faults"]), int(d["hakmem_faults"]))
        extra[s] = {k: d[k] for k in ("bigcache_hit_pct", "sites") if k in d}
    return data["source"], pattern, times, faults, extra


PUBLISHED_SOURCE, PATTERN, PUBLISHED, PUBLISHED_FAULTS, PUBLISHED_EXTRA = load_published()


def read_meta(path):
    meta = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    meta[k] = v
    return meta


def read_daemon_scale(path):
    """The lines bench_daemon_scale prints, or None when it did not run."""
    if not os.path.exists(path):
        return None
    cases, cpu, clients = [], None, 0
    head = re.compile(r"^(.*?):\s+(\d+) procs x\s*(\d+) sites =\s*(\d+) records,\s*(\d+) keys: "
                      r"interval median ([\d.]+) ms, p95 ([\d.]+) ms")
    phases = re.compile(r"mean phases: collect ([\d.]+) ms, learn ([\d.]+) ms, publish ([\d.]+) ms")
    cpu_re = re.compile(r"daemon CPU with (\d+) clients.*?: ([\d.]+)% of one core")
    with open(path) as f:
        for line in f:
            m = head.search(line)
            if m:
                cases.append({"name": m.group(1).strip(), "records": int(m.group(4)), "keys": int(m.group(5)),
                              "median": float(m.group(6)), "p95": float(m.group(7)),
                              "collect": math.nan, "learn": math.nan, "publish": math.nan})
                continue
            m = phases.search(line)
            if m and cases:
                cases[-1].update(collect=float(m.group(1)), learn=float(m.group(2)), publish=float(m.group(3)))
                continue
            m = cpu_re.search(line)
            if m:
                clients, cpu = int(m.group(1)), float(m.group(2))
    if not cases and cpu is None:
        return None
    return {"cases": cases, "cpu": cpu, "cpu_clients": clients}


def num(s):
    try:
        return float(s) if s not in ("", None) else None
    except ValueError:
        return None


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    if v is None:
        return "—"
    if abs(v) >= 100000:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def pct(v):
    return "—" if v is None else f"{v:+.1f}%"


def margin(system, x):
    """Time saved relative to system, in percent (the published margins)."""
    if system is None or x is None or system == 0:
        return None
    return (system - x) / system * 100.0


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def main():
    out = sys.argv[1]
    meta = read_meta(os.path.join(out, "meta.txt"))
    rows = []
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    failures = []
    fpath = os.path.join(out, "failures.txt")
    if os.path.exists(fpath):
        with open(fpath) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 7:
                    failures.append(parts)

    def order(c):
        return ORDER.index(c) if c in ORDER else 99

    fp_configs = sorted({r["config"] for r in rows if r["kind"] == "fastpath"}, key=order)
    configs_run = sorted({r["config"] for r in rows if r["config"] not in FASTPATH_ONLY}, key=order)
    measured = [r for r in rows if r["phase"] == "measured"]

    # (bench, config) -> list of ok rows; and counts of failures
    ok, failed = {}, {}
    for r in measured:
        key = (r["bench"], r["config"])
        if r["status"] == "ok":
            ok.setdefault(key, []).append(r)
        else:
            failed.setdefault(key, []).append(r["status"])

    def stat(bench, config, field):
        return med([num(r[field]) for r in ok.get((bench, config), [])])

    def spread(bench, config, field):
        """Interquartile range over the runs, relative to the median, in percent."""
        v = sorted(x for x in (num(r[field]) for r in ok.get((bench, config), [])) if x is not None)
        if len(v) < 4:
            return None
        q = statistics.quantiles(v, n=4)
        m = statistics.median(v)
        return (q[2] - q[0]) / m * 100.0 if m else None

    def paired(bench, a, b, field):
        """Median over runs of a/b, each ratio taken within one run: the runs
        alternate, so load that comes and goes on a shared machine hits both
        sides of a ratio alike even when it moves the absolute numbers."""
        va = {r["run"]: num(r[field]) for r in ok.get((bench, a), [])}
        vb = {r["run"]: num(r[field]) for r in ok.get((bench, b), [])}
        rs = [va[k] / vb[k] for k in va if k in vb and va[k] and vb[k]]
        return statistics.median(rs) if rs else None

    def cell_status(bench, config):
        if (bench, config) in failed and (bench, config) not in ok:
            return "failed: " + failed[(bench, config)][0]
        return None

    def hit_rate(bench, config):
        rs = ok.get((bench, config), [])
        h = sum(num(r["bigcache_hits"]) or 0 for r in rs)
        m = sum(num(r["bigcache_misses"]) or 0 for r in rs)
        if h + m > 0:
            return 100.0 * h / (h + m)
        return med([num(r["bigcache_hit_pct"]) for r in rs])

    hakmems = [c for c in HAKMEM if c in configs_run]
    sections = []

    def begin(name, title):
        lines = []
        sections.append((name, title, lines))
        return lines

    L = begin("header", None)
    runs, warm = meta.get("runs", "?"), meta.get("warmup", "?")
    L.append(analyze_suite.provenance(meta))
    L.append("")
    L.append(
        f"Scenarios, multi-threaded workloads: {runs} measured runs after {warm} warm-ups per "
        f"configuration, run in alternation; figures are medians over the runs. Mode: {meta.get('mode', '?')}; "
        f"the whole run took {analyze_suite.duration(meta)}."
    )
    unavailable = {k[len("unavailable."):]: v for k, v in meta.items() if k.startswith("unavailable.")}
    for c, why in unavailable.items():
        L.append(f"- **{c} not available**: {why}")
    if "hakmem-learning" in configs_run:
        learned = meta.get("learning")
        if learned:
            L.append(f"- hakmem-learning: hakmemd running from a cold state; a learning phase of {learned}, "
                     "unmeasured passes over the scenarios and workloads, then measured with the daemon "
                     "still learning.")
        else:
            L.append(f"- hakmem-learning: hakmemd running, {meta.get('learn', '?')} unmeasured learning "
                     "pass(es) over all benchmarks before measuring.")
    L.append("")

    # ---- published scenarios ----
    scen = [s for s in SCENARIOS if any(r["bench"] == s for r in rows)]
    if scen:
        L = begin("scenarios", "Published scenarios")
        res = med([num(r.get("timer_res_ns")) for r in measured if r["kind"] == "scenario"])
        L.append("ns per operation (malloc, touch every 4 KiB page, free); page faults: "
                 "getrusage minor+major over the run's measured loop."
                 + ("" if res is None else
                    f" Timer resolution on this machine: {res:.1f} ns; medians closer than that are a tie."))
        L.append("")
        L.append("| scenario | config | median ns | p95 ns | p99 ns | mean ns | page faults | vs system (median) | BigCache hit | sites |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in scen:
            sysm = stat(s, "system", "median_ns")
            best = min(((stat(s, c, "median_ns"), c) for c in configs_run if stat(s, c, "median_ns") is not None),
                       default=(None, None))
            for c in configs_run:
                st = cell_status(s, c)
                if st:
                    L.append(f"| {s} | {c} | {st} | | | | | | | |")
                    continue
                m = stat(s, c, "median_ns")
                name = f"**{c}**" if c == best[1] else c
                hr = hit_rate(s, c) if c in HAKMEM else None
                sites = stat(s, c, "sites") if c in HAKMEM else None
                L.append(
                    f"| {s} | {name} | {fmt(m)} | {fmt(stat(s, c, 'p95_ns'))} | {fmt(stat(s, c, 'p99_ns'))} | "
                    f"{fmt(stat(s, c, 'mean_ns'))} | {fmt(stat(s, c, 'faults'), 0)} | {'—' if c == 'system' else pct(margin(sysm, m))} | "
                    f"{'' if hr is None else f'{hr:.1f}%'} | {'' if sites is None else f'{sites:.0f}'} |"
                )
        L.append("")
        L.append("**Winner per scenario**")
        L.append("")
        L.append("| scenario | winner | median ns | margin vs system | " +
                 " | ".join(f"{h} margin" for h in hakmems) + (" | " if hakmems else "") + "published hakmem margin |")
        L.append("|---|---|---:|---:|" + "---:|" * len(hakmems) + "---:|")
        for s in scen:
            sysm = stat(s, "system", "median_ns")
            cands = [(stat(s, c, "median_ns"), c) for c in configs_run if stat(s, c, "median_ns") is not None]
            if not cands:
                continue
            bm, bc = min(cands)
            hk = " | ".join(pct(margin(sysm, stat(s, h, "median_ns"))) for h in hakmems)
            L.append(f"| {s} | {bc} | {fmt(bm)} | {pct(margin(sysm, bm))} | {hk}{' | ' if hakmems else ''}"
                     f"{PUBLISHED[s][2]:+.1f}% |")
        L.append("")
        for h in hakmems:
            L.append(f"**Reference layout ({h})**, against the published run ({PUBLISHED_SOURCE})")
            L.append("")
            L.append("| scenario | pattern | result (system -> hakmem) | margin | published |")
            L.append("|---|---|---|---:|---|")
            for s in scen:
                sm, hm = stat(s, "system", "median_ns"), stat(s, h, "median_ns")
                res = f"{fmt(sm)} -> {fmt(hm)} ns median"
                pub = f"{PUBLISHED[s][0]} -> {PUBLISHED[s][1]} ns ({PUBLISHED[s][2]:+.1f}%)"
                if s in PUBLISHED_FAULTS:
                    res += f"; page faults {fmt(stat(s, 'system', 'faults'), 0)} -> {fmt(stat(s, h, 'faults'), 0)}"
                    pub += f"; page faults {PUBLISHED_FAULTS[s][0]} -> {PUBLISHED_FAULTS[s][1]}"
                if s == "VM":
                    hr = hit_rate(s, h)
                    res += f"; BigCache hit {'—' if hr is None else f'{hr:.1f}%'}"
                    pub += f"; BigCache hit {PUBLISHED_EXTRA[s].get('bigcache_hit_pct', '—')}%"
                L.append(f"| {s} | {PATTERN[s]} | {res} | {pct(margin(sm, hm))} | {pub} |")
            L.append("")
        peers_here = [p for p in ["system"] + PEERS if p in configs_run]
        if hakmems and peers_here:
            L.append("**Ratios against each peer** (peer ns / hakmem ns, median of per-run ratios; > 1: hakmem faster)")
            L.append("")
            L.append("| scenario | hakmem config | " + " | ".join(peers_here) + " |")
            L.append("|---|---|" + "---:|" * len(peers_here))
            for s in scen:
                for h in hakmems:
                    hm = stat(s, h, "median_ns")
                    cells = []
                    for p in peers_here:
                        rv = paired(s, p, h, "median_ns")
                        cells.append("—" if rv is None else f"{rv:.3f}")
                    L.append(f"| {s} | {h} | " + " | ".join(cells) + " |")
            L.append("")

        if "hakmem-baseline" in configs_run and "hakmem-learning" in configs_run:
            L = begin("scenarios-learning", "Learning on the scenarios: hakmem-learning against hakmem-baseline")
            L.append("Same allocator, daemon on or off. Ratios are baseline / learning, the median of per-run "
                     "ratios (> 1: learning faster). The mean is the measured loop's wall time per operation, "
                     "so it carries the faults and cold misses the median leaves out.")
            L.append("")
            L.append("| scenario | median ns | ratio | mean ns | ratio | p99 ns | page faults |")
            L.append("|---|---:|---:|---:|---:|---:|---:|")
            b, e = "hakmem-baseline", "hakmem-learning"

            def pair(s, field, digits=1):
                return f"{fmt(stat(s, b, field), digits)} -> {fmt(stat(s, e, field), digits)}"

            def rel(s, field):
                rv = paired(s, b, e, field)
                return "—" if rv is None else f"{rv:.3f}"
            for s in scen:
                L.append(f"| {s} | {pair(s, 'median_ns')} | {rel(s, 'median_ns')} | {pair(s, 'mean_ns')} | "
                         f"{rel(s, 'mean_ns')} | {pair(s, 'p99_ns')} | {pair(s, 'faults', 0)} |")
            L.append("")

    # ---- multi-threaded workloads ----
    wls = [w for w in WORKLOADS if any(r["bench"] == w for r in rows)]
    if wls:
        L = begin("workloads", f"Multi-threaded workloads ({meta.get('threads', '?')} threads)")
        L.append("ops/s and peak RSS: medians over the runs; IQR: spread of ops/s over the runs (load from "
                 "other work on the machine); vs system: median of the per-run ratios.")
        L.append("")
        L.append("| workload | config | ops/s | IQR of runs | peak RSS MiB | throughput vs system | RSS vs best peer |")
        L.append("|---|---|---:|---:|---:|---:|---:|")
        for w in wls:
            syst = stat(w, "system", "ops_per_sec")
            peer_rss = [stat(w, p, "maxrss_kb") for p in ["system"] + PEERS if stat(w, p, "maxrss_kb") is not None]
            best_rss = min(peer_rss) if peer_rss else None
            best_tp = max(((stat(w, c, "ops_per_sec"), c) for c in configs_run
                           if stat(w, c, "ops_per_sec") is not None), default=(None, None))
            for c in configs_run:
                st = cell_status(w, c)
                if st:
                    L.append(f"| {w} | {c} | {st} | | | | |")
                    continue
                tp, rss = stat(w, c, "ops_per_sec"), stat(w, c, "maxrss_kb")
                name = f"**{c}**" if c == best_tp[1] else c
                rv = paired(w, c, "system", "ops_per_sec")
                rr = ratio(rss, best_rss)
                sp = spread(w, c, "ops_per_sec")
                L.append(f"| {w} | {name} | {fmt(tp, 0)} | {'—' if sp is None else f'{sp:.0f}%'} | "
                         f"{fmt(None if rss is None else rss / 1024)} | "
                         f"{'—' if rv is None else f'{rv:.3f}x'} | {'—' if rr is None else f'{rr:.2f}x'} |")
        L.append("")
        peers_here = [p for p in ["system"] + PEERS if p in configs_run]
        if hakmems and peers_here:
            L.append("**Throughput ratios** (hakmem ops/s / peer ops/s, median of per-run ratios; > 1: hakmem faster)")
            L.append("")
            L.append("| workload | hakmem config | " + " | ".join(peers_here) + " |")
            L.append("|---|---|" + "---:|" * len(peers_here))
            for h in hakmems:
                logs = {p: [] for p in peers_here}
                for w in wls:
                    cells = []
                    for p in peers_here:
                        rv = paired(w, h, p, "ops_per_sec")
                        cells.append("—" if rv is None else f"{rv:.3f}")
                        if rv:
                            logs[p].append(math.log(rv))
                    L.append(f"| {w} | {h} | " + " | ".join(cells) + " |")
                gm = []
                for p in peers_here:
                    n_ok = len(logs[p])
                    g = math.exp(sum(logs[p]) / n_ok) if n_ok else None
                    note = "" if n_ok == len(wls) else f" ({n_ok}/{len(wls)})"
                    gm.append("—" if g is None else f"**{g:.3f}**{note}")
                L.append(f"| geometric mean | {h} | " + " | ".join(gm) + " |")
            L.append("")
            L.append("Geometric means cover the workloads where both configurations ran; "
                     "(k/n) marks a mean over fewer workloads because one of them failed.")
            L.append("")

    # ---- fast path ----
    fp = sorted({r["bench"] for r in rows if r["kind"] == "fastpath" and r["bench"] != "fastpath"},
                key=lambda b: int(b.split("-")[1]))
    if fp_configs:
        L = begin("fastpath", "Fast path: instructions per malloc/free pair (valgrind --tool=callgrind)")
        L.append("Inclusive instructions of a loop of `p = malloc(SIZE); sink = p; free(p);` minus the same "
                 "loop without the two calls, divided by the iterations: the call, PLT jump and all of "
                 "malloc and free. Size is a compile-time constant, as in most real calls; one block of each "
                 "size stays live so the page in use never empties.")
        L.append("")
        L.append("| size | " + " | ".join(fp_configs) + " |")
        L.append("|---:|" + "---:|" * len(fp_configs))
        for b in fp:
            cells = []
            for c in fp_configs:
                v = [num(r["insn_per_pair"]) for r in rows
                     if r["bench"] == b and r["config"] == c and r["status"] == "ok"]
                cells.append(fmt(v[0]) if v and v[0] is not None else "—")
            L.append(f"| {b.split('-')[1]} B | " + " | ".join(cells) + " |")
        for c in fp_configs:
            bad = [r["status"] for r in rows if r["kind"] == "fastpath" and r["config"] == c and r["status"] != "ok"]
            if bad:
                L.append(f"| {c} failed: {bad[0]} |")
        L.append("")

    # ---- the daemon's own cost ----
    scale = read_daemon_scale(os.path.join(out, "daemon_scale.txt"))
    if scale or "unavailable.daemon_scale" in meta:
        L = begin("daemon-scale", "The daemon: one interval at scale, and its CPU share")
        if not scale:
            L.append(f"Not measured: {meta['unavailable.daemon_scale']}")
        else:
            L.append(f"`build/bench_daemon_scale {meta.get('daemon_scale_args', '')}`: simulated processes in a "
                     "private segment, every site's counters moving every interval (every pull completes: the "
                     "worst case); one core interval (collect, learn, publish) timed. Then real client "
                     "processes at the default 1 s interval.")
            L.append("")
            L.append("| case | records | keys | median ms | p95 ms | collect ms | learn ms | publish ms |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for c in scale["cases"]:
                L.append(f"| {c['name']} | {c['records']:,} | {c['keys']:,} | {c['median']:.2f} | {c['p95']:.2f} | "
                         f"{c['collect']:.2f} | {c['learn']:.2f} | {c['publish']:.2f} |")
            L.append("")
            if scale.get("cpu") is not None:
                L.append(f"Daemon CPU with {scale['cpu_clients']} clients: {scale['cpu']:.3f}% of one core.")
                L.append("")
    # ---- targets ----
    if hakmems:
        L = begin("targets", "Targets")
        L.append("**The allocator**")
        L.append("")

        def mark(good):
            return "—" if good is None else ("PASS" if good else "**MISS**")

        for h in hakmems:
            for s in scen:
                sm, hm = stat(s, "system", "median_ns"), stat(s, h, "median_ns")
                mg = margin(sm, hm)
                L.append(f"- {mark(None if mg is None else mg >= PUBLISHED[s][2])} {h} {s}: margin over system "
                         f"{pct(mg)} (target >= {PUBLISHED[s][2]:+.1f}%)")
                for p in PEERS:
                    pm = stat(s, p, "median_ns")
                    if pm is None or hm is None:
                        continue
                    L.append(f"- {mark(hm < pm)} {h} {s}: faster than {p} ({fmt(hm)} vs {fmt(pm)} ns)")
            if "VM" in scen:
                sf, hf = stat("VM", "system", "faults"), stat("VM", h, "faults")
                good = None if sf is None or hf is None else hf <= sf / 2
                L.append(f"- {mark(good)} {h} VM page faults at most half of system's ({fmt(hf, 0)} vs {fmt(sf, 0)})")
                hr = hit_rate("VM", h)
                want_hr = PUBLISHED_EXTRA["VM"].get("bigcache_hit_pct", 0)
                L.append(f"- {mark(None if hr is None else hr >= want_hr)} {h} VM BigCache hit rate >= {want_hr}% "
                         f"({'not reported' if hr is None else f'{hr:.1f}%'})")
            if wls:
                for p in PEERS:
                    if p not in configs_run:
                        continue
                    lg = [math.log(x) for x in (paired(w, h, p, "ops_per_sec") for w in wls) if x]
                    g = math.exp(sum(lg) / len(lg)) if lg else None
                    L.append(f"- {mark(None if g is None else g > 1)} {h} MT geometric mean faster than {p} "
                             f"({'—' if g is None else f'{g:.3f}x'})")
                for w in wls:
                    peer_rss = [stat(w, p, "maxrss_kb") for p in ["system"] + PEERS
                                if stat(w, p, "maxrss_kb") is not None]
                    hr = stat(w, h, "maxrss_kb")
                    if not peer_rss or hr is None:
                        L.append(f"- {mark(None)} {h} {w}: peak RSS within 10% of best peer (no data)")
                        continue
                    b = min(peer_rss)
                    L.append(f"- {mark(hr <= 1.10 * b)} {h} {w}: peak RSS within 10% of best peer "
                             f"({hr / 1024:.1f} vs {b / 1024:.1f} MiB)")
            if "mimalloc" in fp_configs and h in fp_configs:
                for b in fp:
                    hv = [num(r["insn_per_pair"]) for r in rows if r["bench"] == b and r["config"] == h]
                    mv = [num(r["insn_per_pair"]) for r in rows if r["bench"] == b and r["config"] == "mimalloc"]
                    if hv and mv and hv[0] is not None and mv[0] is not None:
                        L.append(f"- {mark(hv[0] <= mv[0])} {h} fast path {b.split('-')[1]} B: no more "
                                 f"instructions than mimalloc ({hv[0]:.1f} vs {mv[0]:.1f})")
        L.append("")
        if scale:
            L.append("**The daemon at scale**")
            L.append("")
            for c in scale["cases"]:
                if c["records"] < 65536:
                    continue
                L.append(f"- {mark(c['median'] < 10 and c['p95'] < 10)} {c['name']}: {c['records']:,} records, "
                         f"{c['keys']:,} keys in under 10 ms per interval (median {c['median']:.2f}, "
                         f"p95 {c['p95']:.2f} ms)")
            if scale.get("cpu") is not None and scale["cpu_clients"] >= 64:
                L.append(f"- {mark(scale['cpu'] < 1.0)} daemon CPU under 1% of a core with "
                         f"{scale['cpu_clients']} clients ({scale['cpu']:.3f}%)")
            L.append("")
        if "hakmem-baseline" in configs_run and "hakmem-learning" in configs_run:
            L.append("**Learning on the published scenarios**")
            L.append("")
            for s in [x for x in ("VM", "MIXED") if x in scen]:
                rm = paired(s, "hakmem-baseline", "hakmem-learning", "mean_ns")
                rd = paired(s, "hakmem-baseline", "hakmem-learning", "median_ns")
                L.append(f"- {mark(None if rm is None else rm > 1)} hakmem-learning {s}: faster than hakmem-baseline "
                         f"in wall time per operation ({'—' if rm is None else f'{rm:.3f}x'}; "
                         f"median {'—' if rd is None else f'{rd:.3f}x'})")
            L.append("")

    sections.extend(analyze_suite.sections(out, meta))

    # ---- failures ----
    if failures:
        L = begin("failures", "Failed runs")
        L.append("| config | benchmark | phase | runs | status | first line of stderr |")
        L.append("|---|---|---|---:|---|---|")
        groups = {}
        for run, phase, bench, config, status, first, cmd in failures:
            g = groups.setdefault((config, bench, phase, status), [0, first, cmd])
            g[0] += 1
        for (config, bench, phase, status), (n, first, cmd) in sorted(groups.items()):
            first = first.replace("|", "\\|")
            L.append(f"| {config} | {bench} | {phase} | {n} | {status} | {first} |")
        L.append("")
        L.append("Reproduce:")
        L.append("")
        seen = set()
        for (config, bench, phase, status), (n, first, cmd) in sorted(groups.items()):
            if cmd not in seen:
                seen.add(cmd)
                L.append(f"    {cmd}")
        L.append("")

    analyze_suite.write_sections(out, meta, sections)

    # ---- chart data: medians relative to system ----
    def write_dat(name, benches, field, invert):
        path = os.path.join(out, name)
        with open(path, "w") as f:
            f.write("bench " + " ".join(configs_run) + "\n")
            for b in benches:
                base = stat(b, "system", field)
                vals = []
                for c in configs_run:
                    v = stat(b, c, field)
                    if v is None or base is None or v == 0:
                        vals.append("NaN")
                    else:
                        vals.append(f"{(base / v) if invert else (v / base):.4f}")
                f.write(b + " " + " ".join(vals) + "\n")
        return len(benches)

    n1 = write_dat("chart-scenarios.dat", scen, "median_ns", True)
    n2 = write_dat("chart-workloads.dat", wls, "ops_per_sec", False)
    panels = [(p, t) for p, t, n in [
        ("chart-scenarios.dat", "Published scenarios: speed vs system (system ns / config ns, median)", n1),
        ("chart-workloads.dat", "MT workloads: throughput vs system (config ops/s / system ops/s)", n2)] if n]
    ncols = len(configs_run)
    gp = [
        "set terminal pngcairo size 1400,560 font 'sans,10'",
        f"set output '{os.path.join(out, 'chart.png')}'",
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set key top left",
        "set grid ytics",
        "set yrange [0:*]",
        "set ylabel 'relative to system (higher is better)'",
        "set datafile missing 'NaN'",
    ]
    if panels:
        gp.append(f"set multiplot layout 1,{len(panels)} title \"hakmem benchmarks - {meta.get('date', '')}, "
                  f"{meta.get('cores', '?')} cores, {meta.get('cpu', '')}\"")
        for path, title in panels:
            gp.append(f"set title '{title}'")
            gp.append(f"plot for [i=2:{ncols + 1}] '{os.path.join(out, path)}' using i:xtic(1) title columnheader(i), "
                      "1 with lines lc rgb 'black' dt 2 notitle")
        gp.append("unset multiplot")
    else:
        gp.append("set title 'no timed benchmark ran'")
        gp.append("plot 1 notitle")
    with open(os.path.join(out, "chart.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")


if __name__ == "__main__":
    main()
