"""Prefix-tree vs naive tool calls and search wall time per number of degradations.

    .venv/bin/python eval/search_cost.py bench_out/cbsd68_random/results.json

Reads a benchmark's results.json (one search per sample) and prints a markdown table.
"""

import json
import statistics
import sys
from collections import defaultdict


def main(path: str) -> None:
    rows = json.load(open(path))["rows"]
    first_planner = rows[0]["planner"]
    by_n = defaultdict(list)
    for r in rows:
        if r["planner"] == first_planner:
            by_n[r["n_degradations"]].append(r)
    print("| degradations | samples | candidate pipelines (mean) | tool calls, prefix tree | tool calls, naive | saved | search wall time s (median) |")
    print("|---|---|---|---|---|---|---|")
    for n in sorted(by_n):
        rs = by_n[n]
        tree = statistics.fmean(r["tool_calls"] for r in rs)
        naive = statistics.fmean(r["naive_tool_calls"] for r in rs)
        print(
            f"| {n} | {len(rs)} | {statistics.fmean(r['n_candidates'] for r in rs):.0f} | {tree:.0f} | {naive:.0f} | "
            f"{100 * (1 - tree / naive):.0f}% | {statistics.median(r['search_seconds'] for r in rs):.2f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
