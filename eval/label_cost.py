"""How the labeling cost grows, and what a large dataset costs on a cluster.

    .venv/bin/python eval/label_cost.py --rate 0.32 --workers 2 [--samples 100000]

Part 1 is exact: candidate pipelines (k! * t^k) and tool calls of the exhaustive search with and
without the prefix tree, for k degradations and t candidate tools per task
(restoreagent.search.count_pipelines / count_tree_calls). Part 2 extrapolates a measured rate
(labeled samples per second of one machine running ``--workers`` processes) to ``--samples``
samples on N machines: samples are independent, so the Ray backend spreads them with no shared
state and the time divides by N; a 16-core machine is assumed to run 8x the processes at the
per-process rate measured here (an upper bound on its speed).
"""

import argparse

from restoreagent.search import count_pipelines, count_tree_calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, required=True, help="measured samples/s of one machine")
    ap.add_argument("--workers", type=int, required=True, help="processes that rate was measured with")
    ap.add_argument("--samples", type=int, default=100_000)
    args = ap.parse_args()
    print(
        "| degradations k | tools per task t | candidate pipelines | tool calls, prefix tree | tool calls, naive |"
    )
    print("|---|---|---|---|---|")
    for k in range(1, 5):
        for t in range(1, 5):
            toolset = {f"task{i}": [f"tool{j}" for j in range(t)] for i in range(k)}
            pipes = count_pipelines(toolset)
            print(f"| {k} | {t} | {pipes:,} | {count_tree_calls(toolset):,} | {pipes * k:,} |")
    per_process = args.rate / args.workers
    print(
        f"\n{args.samples:,} samples at {args.rate} samples/s per 2-core machine ({per_process:.3f} per process):\n"
    )
    print("| machines | 2-core machines: hours | 16-core machines (16 processes): hours |")
    print("|---|---|---|")
    for n in (1, 10, 50, 100):
        two = args.samples / (args.rate * n) / 3600
        sixteen = args.samples / (per_process * 16 * n) / 3600
        print(f"| {n} | {two:.1f} | {sixteen:.1f} |")


if __name__ == "__main__":
    main()
