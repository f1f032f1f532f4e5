#!/usr/bin/python3
"""Puts the benchmark tables into a Markdown file between its markers.

usage: readme_tables.py FILE SECTIONS_DIR

For every pair of lines `<!-- bench:NAME:begin -->` ... `<!-- bench:NAME:end -->`
in FILE whose SECTIONS_DIR/NAME.md exists (bench/analyze.py writes them),
everything between the two lines is replaced by that piece; nothing else
in FILE changes, and running it again with the same pieces changes nothing.
A marker without a piece is left as it is and named on stderr.  Markers
that do not pair up (a begin without its end, a name twice, an end first)
leave FILE untouched and exit 1.  FILE is replaced atomically.
"""
import os
import re
import sys

MARK = re.compile(r"^<!-- bench:([a-z0-9-]+):(begin|end) -->\s*$")


def splice(text, pieces):
    """Returns (new text, names replaced, names without a piece); raises
    ValueError on markers that do not pair up."""
    out, open_name, seen, done, missing = [], None, set(), [], []
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        m = MARK.match(line)
        if not m:
            if open_name is None or open_name not in pieces:
                out.append(line)
            continue
        name, edge = m.groups()
        if edge == "begin":
            if open_name is not None:
                raise ValueError(f"line {n}: bench:{name}:begin inside bench:{open_name}")
            if name in seen:
                raise ValueError(f"line {n}: bench:{name} appears twice")
            seen.add(name)
            open_name = name
            out.append(line)
            if name in pieces:
                body = pieces[name].rstrip("\n")
                out.append(body + "\n" if body else "")
                done.append(name)
            else:
                missing.append(name)
        else:
            if open_name != name:
                raise ValueError(f"line {n}: bench:{name}:end without its begin")
            open_name = None
            out.append(line)
    if open_name is not None:
        raise ValueError(f"bench:{open_name}:begin has no end")
    return "".join(out), done, missing


def main():
    if len(sys.argv) != 3:
        print("usage: readme_tables.py FILE SECTIONS_DIR", file=sys.stderr)
        return 64
    path, d = sys.argv[1], sys.argv[2]
    pieces = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".md"):
            with open(os.path.join(d, f)) as fh:
                pieces[f[:-3]] = fh.read()
    with open(path) as fh:
        text = fh.read()
    try:
        new, done, missing = splice(text, pieces)
    except ValueError as e:
        print(f"readme_tables: {path}: {e}; nothing changed", file=sys.stderr)
        return 1
    if new != text:
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(new)
        os.replace(tmp, path)
    print(f"readme_tables: {path}: {len(done)} section(s) written ({' '.join(done) or 'none'})"
          + (f"; no piece for {' '.join(missing)}, left as it was" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
