"""The detector's training curve across runs: python eval/perception_curve.py LOG.jsonl... --out PNG

Each log is a run's train_log.jsonl (restoreagent.perception.train); a run that started from the
previous run's weights continues its curve (samples are added up).
"""

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    offset = 0
    for i, path in enumerate(args.logs, 1):
        rows = [json.loads(x) for x in open(path)]
        xs = [(offset + r["samples"]) / 1e6 for r in rows]
        ax.plot(xs, [r["bce"] for r in rows], label=f"run {i}: presence BCE")
        ax.plot(xs, [r["severity"] for r in rows], "--", label=f"run {i}: severity loss")
        offset += rows[-1]["samples"]
    ax.set_xlabel("generated training samples (millions)")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
