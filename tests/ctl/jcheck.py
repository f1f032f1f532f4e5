#!/usr/bin/env python3
"""Parses JSON from stdin (strictly: one document, or one per line with
--lines) and evaluates a Python expression over it, bound to `j`.
Exit 0 when the expression is true; otherwise prints why and exits 1.
With --print, prints the expression's value instead (for shell use)."""
import json
import sys

def main():
    args = sys.argv[1:]
    lines = "--lines" in args
    show = "--print" in args
    args = [a for a in args if a not in ("--lines", "--print")]
    expr = args[0]
    text = sys.stdin.read()
    try:
        if lines:
            j = [json.loads(l) for l in text.splitlines() if l.strip()]
        else:
            j = json.loads(text)
    except ValueError as e:
        print(f"not JSON: {e}: {text[:200]!r}")
        return 1
    try:
        # Globals, not locals: comprehensions in expr must see j.
        v = eval(expr, {"json": json, "j": j})
    except Exception as e:  # the expression itself failed: a test failure
        print(f"{expr}: {type(e).__name__}: {e}")
        return 1
    if show:
        print(v)
        return 0
    if not v:
        print(f"false: {expr}")
        return 1
    return 0

sys.exit(main())
