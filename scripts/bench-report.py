#!/usr/bin/env python3
"""Prints the summary of a benchmark results file (default build/bench-results.txt).

Each line of the file is "bench=<suite> case=<case> key=value ..." (tests/bench/README.md).
Per suite: one table of its lines without round= (rows: cases, columns: keys in order of first
appearance), split into several blocks when too wide; then the goals (goal=, goal_met=), then
the runner's lines (bench=_runner: each suite's status and time)."""
import os
import re
import sys

WIDTH = int(os.environ.get("BENCH_REPORT_WIDTH", "120"))


def parse(path):
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            kv = {}
            for tok in line.split():
                k, sep, v = tok.partition("=")
                if sep:
                    kv[k] = v
            if "bench" in kv and "case" in kv:
                rows.append(kv)
    return rows


def table(header, rows):
    """header: list of column names; rows: lists of strings. Returns the lines."""
    w = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    out = ["  ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(header))]
    for r in rows:
        out.append("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
    return out


def suite_table(lines):
    # Columns in the order the lines give them: a key first seen on a later line goes right
    # after the key that precedes it there.
    keys = []
    for kv in lines:
        prev = None
        for k in kv:
            if k in ("bench", "case", "goal", "goal_met"):
                continue
            if k not in keys:
                keys.insert(keys.index(prev) + 1 if prev else len(keys), k)
            prev = k
    cases = [kv["case"] for kv in lines]
    cw = max(len("case"), *(len(c) for c in cases))
    # split the columns into blocks that fit WIDTH
    blocks, cur, width = [], [], cw
    for k in keys:
        colw = 2 + max(len(k), *(len(kv.get(k, "-")) for kv in lines))
        if cur and width + colw > WIDTH:
            blocks.append(cur)
            cur, width = [], cw
        cur.append(k)
        width += colw
    if cur or not blocks:
        blocks.append(cur)
    out = []
    for b in blocks:
        out += table(["case"] + b, [[kv["case"]] + [kv.get(k, "-") for k in b] for kv in lines])
        out.append("")
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("BUILD", "build"), "bench-results.txt")
    try:
        rows = parse(path)
    except OSError as e:
        print(f"bench-report: {e}", file=sys.stderr)
        return 1
    suites = []
    for kv in rows:
        if kv["bench"] != "_runner" and kv["bench"] not in suites:
            suites.append(kv["bench"])
    print()
    print(f"==== benchmark summary ({path}) ====")
    for s in suites:
        lines = [kv for kv in rows if kv["bench"] == s and "round" not in kv]
        if not lines:
            continue
        print()
        print(f"--- {s}")
        for l in suite_table(lines):
            print(l)
    goals = [kv for kv in rows if "goal" in kv and "round" not in kv]
    if goals:
        print("--- goals (reported, not asserted)")
        grow = []
        for kv in goals:
            m = re.match(r"([A-Za-z0-9_.]+)(<=|>=|<|>|==)(.*)", kv["goal"])
            val = kv.get(m.group(1), "?") if m else "?"
            met = kv.get("goal_met", "?")
            grow.append([kv["bench"] + "/" + kv["case"], kv["goal"], val,
                         "met" if met == "yes" else "BEHIND" if met == "no" else met])
        for l in table(["suite/case", "goal", "measured", ""], grow):
            print(l)
        print()
    runner = [kv for kv in rows if kv["bench"] == "_runner"]
    if runner:
        print("--- suites")
        for l in table(["suite", "status", "secs"],
                       [[kv["case"], kv.get("status", "?"), kv.get("secs", "?")] for kv in runner]):
            print(l)
    return 0


if __name__ == "__main__":
    sys.exit(main())
