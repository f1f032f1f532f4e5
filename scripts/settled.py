#!/usr/bin/env python3
"""Reads `hakmemctl --json sites --top 0` on stdin and says whether the
daemon has settled: every site with 0.5% or more of the bytes allocated
exploits its best arm.  Prints one line starting with "settled" or
"exploring"; exits 0 when settled, 1 otherwise."""
import json
import sys


def main():
    try:
        sites = json.load(sys.stdin)["sites"]
    except Exception as e:  # a daemon that is not answering is not settled
        print("exploring (hakmemctl sites failed: %s)" % e)
        return 1
    total = sum(s.get("bytes", 0) for s in sites) or 1
    hot = [s for s in sites if s.get("bytes", 0) >= total / 200]
    if not hot:
        print("exploring: the daemon knows no site yet")
        return 1
    still = [s for s in hot if not s.get("settled")]
    word = "exploring" if still else "settled"
    print("%s: %d of %d sites with 0.5%%+ of the bytes exploit their best arm" % (word, len(hot) - len(still), len(hot)))
    return 1 if still else 0


if __name__ == "__main__":
    sys.exit(main())
