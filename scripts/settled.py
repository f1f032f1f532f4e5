#!/usr/bin/env python3
"""Says whether a learning daemon has settled.  Reads on stdin either
`hakmemctl --json sites --top 0` (every site with 0.5% or more of the
bytes allocated exploits its best arm) or `hakmemctl --json binaries`
(every binary the daemon has taken three runs or more of has tried every
arm enough to choose; with --races, and races no arm against its choice
either).  Prints one line starting with "settled" or "exploring"; exits 0
when settled, 1 otherwise."""
import json
import sys


def sites_verdict(sites):
    total = sum(s.get("bytes", 0) for s in sites) or 1
    hot = [s for s in sites if s.get("bytes", 0) >= total / 200]
    if not hot:
        return 1, "exploring: the daemon knows no site yet"
    still = [s for s in hot if not s.get("settled")]
    word = "exploring" if still else "settled"
    return (1 if still else 0), "%s: %d of %d sites with 0.5%%+ of the bytes exploit their best arm" % (
        word, len(hot) - len(still), len(hot))


# A binary the daemon has taken fewer runs of than this is left out: one
# whose runs are nearly all too short to count (or too young to register)
# would keep the verdict at exploring however long the others have settled.
MIN_RUNS = 3


def binaries_verdict(binaries, races=False):
    seen = [b for b in binaries if b.get("observations", 0) >= MIN_RUNS]
    rare = sum(1 for b in binaries if 0 < b.get("observations", 0) < MIN_RUNS)
    aside = " (%d with fewer than %d runs left aside)" % (rare, MIN_RUNS) if rare else ""
    if not seen:
        return 1, "exploring: the daemon has taken %d runs of no binary yet%s" % (MIN_RUNS, aside)
    still = [b for b in seen if not b.get("settled")]
    racing = [b for b in seen if b.get("settled") and b.get("racing")] if races else []
    word = "exploring" if still or racing else "settled"
    raced = ", %d racing an arm against their choice" % len(racing) if racing else ""
    return (1 if still or racing else 0), "%s: %d of %d binaries have tried every arm%s%s" % (
        word, len(seen) - len(still), len(seen), raced, aside)


def main():
    try:
        doc = json.load(sys.stdin)
    except Exception as e:  # a daemon that is not answering is not settled
        print("exploring (hakmemctl failed: %s)" % e)
        return 1
    races = "--races" in sys.argv[1:]
    rc, line = binaries_verdict(doc["binaries"], races) if "binaries" in doc else sites_verdict(doc.get("sites", []))
    print(line)
    return rc


if __name__ == "__main__":
    sys.exit(main())
