#!/usr/bin/python3
"""Puts generated pieces into a Markdown file between its markers.

usage: readme_tables.py [--kind KIND] FILE SECTIONS_DIR

For every pair of lines `<!-- KIND:NAME:begin -->` ... `<!-- KIND:NAME:end -->`
in FILE whose SECTIONS_DIR/NAME.md exists, everything between the two lines
is replaced by that piece; nothing else in FILE changes, and running it
again with the same pieces changes nothing.  KIND is `bench` by default
(the tables bench/analyze.py writes); `sample` marks the hakmemctl samples
(scripts/readme_samples.sh).  A marker without a piece is left as it is and
named on stderr.  Markers that do not pair up (a begin without its end, a
name twice, an end first) leave FILE untouched and exit 1.  FILE is
replaced atomically.
"""
import os
import re
import sys

def marks(text, kind):
    """Yields (line, name, edge) for each line of text: edge is "begin" or
    "end" on a marker line of this kind, else None, and name the block the
    line is in (or marks); raises ValueError on markers that do not pair up."""
    mark = re.compile(r"^<!-- " + re.escape(kind) + r":([a-z0-9-]+):(begin|end) -->\s*$")
    open_name, seen = None, set()
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        m = mark.match(line)
        if not m:
            yield line, open_name, None
            continue
        name, edge = m.groups()
        if edge == "begin":
            if open_name is not None:
                raise ValueError(f"line {n}: {kind}:{name}:begin inside {kind}:{open_name}")
            if name in seen:
                raise ValueError(f"line {n}: {kind}:{name} appears twice")
            seen.add(name)
            open_name = name
        elif open_name != name:
            raise ValueError(f"line {n}: {kind}:{name}:end without its begin")
        else:
            open_name = None
        yield line, name, edge
    if open_name is not None:
        raise ValueError(f"{kind}:{open_name}:begin has no end")


def splice(text, pieces, kind="bench"):
    """Returns (new text, names replaced, names without a piece); raises
    ValueError on markers that do not pair up."""
    out, done, missing = [], [], []
    for line, name, edge in marks(text, kind):
        if edge is None:
            if name is None or name not in pieces:
                out.append(line)
            continue
        out.append(line)
        if edge == "begin" and name in pieces:
            body = pieces[name].rstrip("\n")
            out.append(body + "\n" if body else "")
            done.append(name)
        elif edge == "begin":
            missing.append(name)
    return "".join(out), done, missing


def extract(text, kind):
    """What stands between each pair of markers of this kind, by name;
    raises ValueError on markers that do not pair up."""
    blocks = {}
    for line, name, edge in marks(text, kind):
        if edge == "begin":
            blocks[name] = ""
        elif edge is None and name is not None:
            blocks[name] += line
    return blocks


def main():
    args = sys.argv[1:]
    kind = "bench"
    if len(args) == 4 and args[0] == "--kind":
        kind, args = args[1], args[2:]
    if len(args) != 2 or not re.fullmatch(r"[a-z0-9-]+", kind):
        print("usage: readme_tables.py [--kind KIND] FILE SECTIONS_DIR", file=sys.stderr)
        return 64
    path, d = args
    pieces = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".md"):
            with open(os.path.join(d, f)) as fh:
                pieces[f[:-3]] = fh.read()
    with open(path) as fh:
        text = fh.read()
    try:
        new, done, missing = splice(text, pieces, kind)
    except ValueError as e:
        print(f"readme_tables: {path}: {e}; nothing changed", file=sys.stderr)
        return 1
    if new != text:
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(new)
        os.replace(tmp, path)
    print(f"readme_tables: {path}: {len(done)} {kind} section(s) written ({' '.join(done) or 'none'})"
          + (f"; no piece for {' '.join(missing)}, left as it was" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
