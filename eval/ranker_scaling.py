"""The planner with and without the labeled stage, and its scaling curve (25 / 50 / 100% of the labels).

For each fraction, the plan scorer is trained on that share of the committed labeled dataset
(``restoreagent job train-ranker fraction=F``, the same validation photos held out), then the dev
bench (RestoreAgent's 7 combinations, 56 samples, and random 1-4 degradations, 64 samples, on
cbsd68 at 128 px; the searches are cached in the bench folders) ranks, in one run per table:

- ``fixed`` (told the truth) and ``fixed+detect``: the baselines;
- ``vlm@LM-ONLY``: the shipped planner without its plan scorer (the language model plans): the
  same planner without the labeled stage;
- ``ranker@FRACTION``: the detector's set, then the scorer's pick (what the shipped ``vlm`` does);
- ``ranker+truth@FRACTION``: the scorer told the true set (the scorer alone, as ``fixed`` is told).

    python eval/ranker_scaling.py --images ../shared/data/images/cbsd68 --out bench_out/ranker_scaling \\
        --figure docs/img/ranker_scaling.png

Writes OUT/scaling.json, OUT/scaling.md and the figure (with RestoreAgent's published curve).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

RESTOREAGENT_CURVE = [(7000, 16.2), (14000, 13.6), (23000, 12.9)]  # anchors.md: samples -> mean ranking %
ROOT = Path(__file__).resolve().parents[1]


def lm_only_planner(out: Path) -> Path:
    """A copy of the shipped planner folder whose language model plans (no plan scorer)."""
    from restoreagent.planners.vlm.build_default import default_planner_dir

    dst = out / "planner_lm_only"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(default_planner_dir(), dst)
    meta_path = dst / "restoreagent_planner.json"
    meta = json.loads(meta_path.read_text())
    meta["plan_scorer"] = "none"
    meta_path.write_text(json.dumps(meta, indent=1))
    return dst


def plot(result: dict, planners: list[str], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, overall = result["scaling"], result["overall"]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    n = [r["train_samples"] for r in rows]
    ax.plot(n, [r["ranker"] for r in rows], "o-", label="restoreagent: detector's set + plan scorer (shipped)")
    ax.plot(n, [r["ranker_truth"] for r in rows], "s--", label="restoreagent plan scorer, told the true set")
    ax.plot(*zip(*RESTOREAGENT_CURVE), "^-", label="RestoreAgent (published; its own tools)")
    base = [overall[p] for p in planners[:3]]
    ax.axhspan(min(base), max(base) + 0.05, color="grey", alpha=0.4)
    ax.annotate(f"fixed, fixed+detect, vlm without labels: {min(base):.1f}-{max(base):.1f}%", (0.02, max(base) + 0.3),
                xycoords=("axes fraction", "data"), fontsize=7)
    ax.set_xlabel("labeled training samples")
    ax.set_ylabel("mean ranking % on the dev bench (lower is better)")
    ax.set_ylim(10, max(base) + 2)
    ax.set_title("Plan scorer: scaling with labeled samples (dev bench, 120 samples)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.0, 0.88))  # below the baselines band, off the curves
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True, help="the dev photos (cbsd68)")
    ap.add_argument("--labels", default="labels/restoreagent-labels-v1")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--out", default="bench_out/ranker_scaling")
    ap.add_argument("--figure", default=None)
    ap.add_argument("--combos-bench", default="bench_out/combos_v5", help="bench folder of the 56 combination samples (cached searches)")
    ap.add_argument("--random-bench", default="bench_out/random_v5", help="bench folder of the 64 random samples")
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from OUT/scaling.json")
    args = ap.parse_args()
    if args.plot_only:
        result = json.loads((Path(args.out) / "scaling.json").read_text())
        plot(result, list(result["baselines"]), args.figure)
        return

    from restoreagent.jobs import run_job

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lm_only = lm_only_planner(out)
    scorers = {}
    for f in args.fractions:
        folder = out / f"scorer_{int(round(100 * f)):03d}"
        summary = run_job("train-ranker", {"labels": args.labels, "fraction": f, "output_dir": str(folder),
                                           "export": str(folder / "model")})
        scorers[f] = (folder / "model", summary)
    planners = ["fixed", "fixed+detect", f"vlm@{lm_only}"]
    for folder, _ in scorers.values():
        planners += [f"ranker@{folder}", f"ranker+truth@{folder}"]
    tables = {}
    for name, bench, extra in (("combos", args.combos_bench, {"samples": 56, "combos_file": "configs/bench/restoreagent_combos.txt"}),
                               ("random", args.random_bench, {"samples": 64})):
        res = run_job("bench", {"images": args.images, "seed": 0, "crop": 128, "out": bench, "planners": planners, **extra})
        tables[name] = {p: {"n": a["n"], "ranking_mean": a["ranking_mean"]} for p, a in res["summary"]["planners"].items()}
    overall = {}
    for p in planners:
        n = sum(tables[t][p]["n"] for t in tables)
        overall[p] = sum(tables[t][p]["ranking_mean"] * tables[t][p]["n"] for t in tables) / n
    rows = []
    for f, (folder, summary) in scorers.items():
        det, truth = f"ranker@{folder}", f"ranker+truth@{folder}"
        rows.append({"fraction": f, "train_samples": summary["train_samples"], "val": summary["val"],
                     "ranker": overall[det], "ranker_truth": overall[truth],
                     **{f"{t}_{k}": tables[t][name]["ranking_mean"] for t in tables for k, name in (("ranker", det), ("truth", truth))}})
    base = {p: overall[p] for p in planners[:3]}
    result = {"tables": tables, "overall": overall, "scaling": rows, "baselines": base}
    (out / "scaling.json").write_text(json.dumps(result, indent=1, default=str))
    names = {"fixed": "fixed (told the true set)", "fixed+detect": "fixed+detect", planners[2]: "vlm, its language model plans (no labeled stage)"}
    lines = ["| planner | labeled samples it trained on | RestoreAgent combos (56) | random 1-4 (64) | all 120 |", "|---|---|---|---|---|"]
    for p in planners[:3]:
        lines.append(f"| {names[p]} | 0 | {tables['combos'][p]['ranking_mean']:.1f} | {tables['random'][p]['ranking_mean']:.1f} | {overall[p]:.1f} |")
    for key, what in (("ranker", "detector's set"), ("truth", "told the true set")):
        for r in rows:
            lines.append(f"| scorer, {int(100 * r['fraction'])}% of the labels, {what} | {r['train_samples']} | {r['combos_' + key]:.1f} | "
                         f"{r['random_' + key]:.1f} | {r['ranker' if key == 'ranker' else 'ranker_truth']:.1f} |")
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.figure:
        plot(result, planners, args.figure)


if __name__ == "__main__":
    main()
