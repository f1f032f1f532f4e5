#!/usr/bin/env python3
"""TEST ONLY: compares what two `hakmemctl --json sites --top 0` answers say
was learned: per site, each arm's pulls and mean reward (and, unless the
site was forgotten or merged, its published thresholds).

usage: same_learning.py BEFORE AFTER              AFTER learned what BEFORE did
       same_learning.py BEFORE AFTER --forgot KEY  ... but site KEY forgot it all
       same_learning.py BEFORE AFTER --forgot all  every site forgot it all
       same_learning.py BEFORE AFTER --plus OTHER  AFTER holds BEFORE and OTHER
                                                   merged: pulls added, means
                                                   weighted by pulls
Exit 0 when it holds (and BEFORE has learned something); else 1 and why."""
import json
import sys


def learned(path):
    return {s["site"]: s for s in json.load(open(path))["sites"]}


def arms(site):
    return {a["name"]: (a["pulls"], a["mean_reward"]) for a in site["arms"]}


def same_arms(x, y):
    return x.keys() == y.keys() and all(x[n][0] == y[n][0] and abs(x[n][1] - y[n][1]) < 1e-6 for n in x)


def merged(x, y):
    out = {}
    for n in set(x) | set(y):
        p1, m1 = x.get(n, (0, 0.0))
        p2, m2 = y.get(n, (0, 0.0))
        out[n] = (p1 + p2, (m1 * p1 + m2 * p2) / (p1 + p2) if p1 + p2 else 0.0)
    return out


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    before, after = learned(args[0]), learned(args[1])
    forgot = args[args.index("--forgot") + 1] if "--forgot" in args else None
    other = learned(args[args.index("--plus") + 1]) if "--plus" in args else {}
    if not any(p for s in before.values() for p, _ in arms(s).values()):
        sys.exit("nothing learned in %s to compare" % args[0])
    bad = []
    for key in set(before) | set(other):
        if key not in after:
            bad.append((key, "missing"))
            continue
        got = arms(after[key])
        if forgot in ("all", key):
            if any(p for p, _ in got.values()) or after[key]["pinned_arm"] != -1:
                bad.append((key, "not forgotten", got, after[key]["pinned_arm"]))
            continue
        if other:
            want = merged(arms(before[key]) if key in before else {}, arms(other[key]) if key in other else {})
        else:
            want = arms(before[key])
            if after[key]["thresholds"] != before[key]["thresholds"]:
                bad.append((key, "thresholds", before[key]["thresholds"], after[key]["thresholds"]))
        if not same_arms(want, got):
            bad.append((key, "arms", want, got))
    if bad:
        print("%d sites differ, e.g. %s" % (len(bad), bad[:2]))
        sys.exit(1)


if __name__ == "__main__":
    main()
