#!/usr/bin/python3
"""Compares the hakmemctl samples of README.md with a fresh run's.

usage: readme_samples.py names README DIR
       readme_samples.py compare README DIR NAME
       readme_samples.py normalise FILE

scripts/readme_samples.sh writes DIR/NAME.md, one fenced block per sample;
README.md holds them between <!-- sample:NAME:begin --> and
<!-- sample:NAME:end --> (bench/readme_tables.py --kind sample puts them
there).  `names` prints every sample name either side has.  `compare`
exits 0 when README.md's sample NAME is the run's, once both are
normalised; else 1, with a short diff on stdout (README.md's lines as -,
the run's as +).  `normalise` prints FILE normalised.

Normalising replaces what differs from run to run (pids, times, counters,
byte counts, rewards, build-id hashes and offsets) by a placeholder and,
on a line it changed, squeezes runs of spaces to one (the widths of those
values vary).  Everything else must match to the character: commands,
messages, field names, column headers, arm indices and names, thresholds,
the counts of sites and processes, whether an arm was ever pulled.
"""
import difflib
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import readme_tables  # noqa: E402

KIND = "sample"
NUM = r"\d+(?:\.\d+)?"
HUMAN = NUM + r"[KMGTPE]?"          # human_bytes: 512, 1.5M, 2G
DURATION = r"\d+(?:\.\ds|m\d\ds|h\d\dm\d\ds|d\d\dh\d\dm)"   # human_duration

# A value of a table column that changes from run to run ("-" when there is
# none stays: it says there was nothing to count).
VALUE = re.compile(r"^(?:" + HUMAN + r"%?|" + DURATION + ")$")


def _values(m, groups):
    """The match's text with the numbers of the given groups made N."""
    parts, last = [], m.start()
    for g in range(1, (m.lastindex or 0) + 1):
        parts.append(m.string[last:m.start(g)])
        v = m.group(g)
        parts.append("N" if g in groups and VALUE.match(v) else v)
        last = m.end(g)
    parts.append(m.string[last:m.end()])
    return "".join(parts)


# (pattern, replacement): a string, or a function of the match.
VARYING = [
    # names that come from the build: a site key (module build-id hash and
    # offset), a binary's hash, offsets in a module or function
    (r"\b[0-9a-f]{16}:[0-9a-f]+\b", "KEY"),
    (r"\b[0-9a-f]{16}\b", "HASH"),
    (r"\+0x[0-9a-f]+\b", "+0xOFF"),
    # status
    (r"\(pid \d+\)", "(pid N)"),
    (r"\bup " + DURATION + r"\b", "up T"),
    (r"\bgeneration( +)\d+", r"generation\1N"),
    (r"\(\d+ intervals, last took " + NUM + r" ms\)", "(N intervals, last took T ms)"),
    (r'"(pid|uptime_ms|generation|intervals|last_interval_ns)":\d+', r'"\1":N'),
    # procs: PID, then SITES kept, then BYTES RSS FAULTS HEARTBEAT
    (r"^(\d+)( +\d+ +)(\S+)( +)(\S+)( +)(\d+)( +)(" + DURATION + r")( ago )",
     lambda m: _values(m, {1, 3, 5, 7, 9})),
    # sites: the counters, BigCache's hits, the pulls and rewards of an arm
    # pulled at all (an arm never pulled stays as it is)
    (r"\b(allocs|frees) \d+", r"\1 N"),
    (r"\b(bytes|live) " + HUMAN + r"\b", r"\1 N"),
    (r"\bbigcache hit " + NUM + r"% \(\d+/\d+\)", "bigcache hit N"),
    (r"\bevictions \d+", "evictions N"),
    (r"^(   [* ] +\d+  \S+ +)[1-9]\d*(  )" + NUM + "$", r"\1N\2N"),
    # watch: ALLOCS/s BYTES/s LIVE BC-HIT
    (r"^(KEY +\S+ +)(\S+)( +)(\S+)( +)(\S+)( +)(\S+)( +\S+ +\d+ +(?:on|off) )",
     lambda m: _values(m, {2, 4, 6, 8})),
    # export, metrics, binaries
    (r"\(\d+ bytes\)", "(N bytes)"),
    (r"^(hakmem_\w+\{[^}]*\}) " + NUM + "$", r"\1 N"),
    (r"\bcost its runs " + NUM + "%", "cost its runs N%"),
    # the exit report: every figure of its lines (their words and layout stay)
    (r"^ *(?:hakmem \S+ report:|heaps live|large:|large moves:|BigCache:|daemon:|daemon plane:|knobs:|sites:|\d+ +myserver\+).*$",
     lambda m: re.sub(r"\d+(?:\.\d+)?", "N", m.group(0))),
]
VARYING = [(re.compile(p, re.M), r) for p, r in VARYING]


def normalise(text):
    """The lines of a sample with what varies between runs replaced."""
    out = []
    for line in text.rstrip("\n").split("\n"):
        new = line
        for pat, rep in VARYING:
            new = pat.sub(rep, new)
        if new != line:
            new = re.sub(r" {2,}", " ", new)
        out.append(new)
    return out


def load(readme, d):
    """README.md's samples and the run's, by name."""
    with open(readme) as fh:
        shown = readme_tables.extract(fh.read(), KIND)
    made = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".md"):
            with open(os.path.join(d, f)) as fh:
                made[f[:-3]] = fh.read()
    return shown, made


def compare(shown, made, name):
    """0 when the sample matches, else 1 with why on stdout."""
    if name not in shown:
        print(f"README.md has no sample {name} (no <!-- {KIND}:{name}:begin --> marker); make docs adds its text")
        return 1
    if name not in made:
        print(f"the run made no sample {name}: README.md shows something scripts/readme_samples.sh no longer runs")
        return 1
    old, new = normalise(shown[name]), normalise(made[name])
    if old == new:
        return 0
    diff = list(difflib.unified_diff(old, new, "README.md", "this run", n=1, lineterm=""))
    print("\n".join(diff[:24] + (["..."] if len(diff) > 24 else [])))
    return 1


def main():
    a = sys.argv[1:]
    try:
        if len(a) == 3 and a[0] == "names":
            shown, made = load(a[1], a[2])
            print("\n".join(sorted(set(shown) | set(made))))
            return 0
        if len(a) == 4 and a[0] == "compare":
            shown, made = load(a[1], a[2])
            return compare(shown, made, a[3])
        if len(a) == 2 and a[0] == "normalise":
            with open(a[1]) as fh:
                print("\n".join(normalise(fh.read())))
            return 0
    except (OSError, ValueError) as e:
        print(f"readme_samples: {e}", file=sys.stderr)
        return 2
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main())
