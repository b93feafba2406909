"""The beam labeler against the exhaustive labeler on the same samples (docs/labeling.md).

    OMP_NUM_THREADS=1 .venv/bin/python eval/label_beam.py --out /tmp/beam_vs_exhaustive.jsonl \\
        --samples 100 --widths 1,2 [--start 50] [--images DIR ...]   # resumable: finished samples are kept
    .venv/bin/python eval/label_beam.py --out /tmp/beam_vs_exhaustive.jsonl [--more OTHER.jsonl] --report
    # a run with other settings (RESTOREAGENT_HALF=1: bfloat16 tools) judged in a --save-scores run's frame
    .venv/bin/python eval/label_beam.py --out /tmp/bf16.jsonl --report --frame /tmp/fp32.jsonl

Samples are the labeler's (restoreagent.labeling.labeler, seed 0): random 128 px crops of the train
folders, 1-4 core degradations in the default recipe's proportions, quantised to 8 bits. Per
sample: the exhaustive search as the labeler runs it (every internal node scored), then the beam
at each width; both on one thread. The beam's pick is judged in the exhaustive frame: found the
exhaustive best (same plan), its ranking among every candidate (% strictly better) and its
regret (exhaustive best's balanced score minus the pick's).
"""

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from label_replay import _text, in_exhaustive_frame, saved_scores  # eval/, beside this script

from restoreagent.degradations import degrade
from restoreagent.imageio import quantize
from restoreagent.jobs.label import LabelConfig
from restoreagent.labeling.beam import beam_search
from restoreagent.labeling.labeler import _scorer, plan_labels
from restoreagent.search import exhaustive_search
from restoreagent.splits import TRAIN_FOLDERS

IMAGES = list(TRAIN_FOLDERS)


def labeler_samples(args):
    """The labeler's samples ``args.start``..``args.samples - 1`` not yet in ``args.out`` (JSON lines
    with a "sample" key; resumable): (index, payload, degraded image, degradations, scorer)."""
    torch.set_num_threads(1)
    out = Path(args.out)
    done = set()
    if out.exists():
        done = {json.loads(line)["sample"] for line in out.read_text().splitlines() if line.strip()}
    plan = plan_labels(LabelConfig(images=tuple(args.images), out="unused", samples=args.samples, seed=args.seed))
    scorer = _scorer(plan.metrics)
    for i in range(args.start, args.samples):
        if i in done:
            continue
        p = plan.payload(i)
        degraded, record = degrade(p["clean"], chain=", ".join(p["combo"]), seed=p["deg_seed"])
        yield i, p, quantize(degraded), record["degradations"], scorer


def measure(args) -> None:
    out = Path(args.out)
    widths = [int(w) for w in args.widths.split(",") if w]
    for i, p, degraded, degs, scorer in labeler_samples(args):
        toolset = {t: p["toolset"][t] for t in p["toolset"]}
        t0 = time.perf_counter()
        ex = exhaustive_search(degraded, p["clean"], degradations=degs, toolset=toolset, scorer=scorer, record_nodes=True)
        row = {
            "sample": i, "k": len(degs), "combo": degs, "candidates": len(ex.candidates),
            "exhaustive_seconds": time.perf_counter() - t0, "exhaustive_calls": ex.tool_calls, "best": ex.best.plan.text(),
            "beams": {},
        }
        scores = {c.plan.text(): c.balanced for c in ex.candidates}
        if args.save_scores:  # every pipeline's and node's metrics: eval/label_replay.py replays labelers on them
            row["scores"] = saved_scores(ex)
        for w in widths:
            t0 = time.perf_counter()
            b = beam_search(degraded, p["clean"], degradations=degs, toolset=toolset, scorer=scorer, width=w)
            sec = time.perf_counter() - t0
            pick = b.best.plan.text()
            row["beams"][str(w)] = {
                "seconds": sec, "calls": b.tool_calls, "evaluated": len(b.candidates), "pick": pick,
                "found_best": pick == row["best"], "ranking": ex.ranking_of_score(scores[pick]),
                "regret": ex.best.balanced - scores[pick],
            }
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(i, row["k"], f"{row['exhaustive_seconds']:.1f}s", {w: (round(v["seconds"], 2), v["found_best"]) for w, v in row["beams"].items()}, flush=True)


def report(args) -> None:
    rows = _rows([args.out, *args.more])
    rows = sorted({r["sample"]: r for r in rows}.values(), key=lambda r: r["sample"])  # a sample measured twice: once
    widths = sorted({w for r in rows for w in r["beams"]}, key=int)
    print(f"{len(rows)} samples ({', '.join(f'{k} degradations: {n}' for k, n in sorted(_count(rows).items()))})\n")
    print("| labeler | samples | finds the exhaustive best | ranking of its pick (mean %) | regret, balanced (mean / max) "
          "| regret < 0.05 | tool calls (mean) | seconds per sample (median) | total time | speed-up (total time) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ex_total = sum(r["exhaustive_seconds"] for r in rows)
    print(f"| exhaustive | {len(rows)} | 100% | 0.00% | 0 / 0 | 100% | {statistics.fmean(r['exhaustive_calls'] for r in rows):.0f} | "
          f"{statistics.median(r['exhaustive_seconds'] for r in rows):.2f} | {ex_total:.0f} s | 1x |")
    for w in widths:
        b = [r["beams"][w] for r in rows if w in r["beams"]]
        total = sum(x["seconds"] for x in b)
        print(f"| beam, width {w} | {len(b)} | {100 * statistics.fmean(x['found_best'] for x in b):.1f}% | "
              f"{statistics.fmean(x['ranking'] for x in b):.2f}% | {statistics.fmean(x['regret'] for x in b):.3f} / "
              f"{max(x['regret'] for x in b):.3f} | {100 * statistics.fmean(x['regret'] < 0.05 for x in b):.1f}% | "
              f"{statistics.fmean(x['calls'] for x in b):.0f} | "
              f"{statistics.median(x['seconds'] for x in b):.2f} | {total:.0f} s | {ex_total / total:.1f}x |")
    print("\nby number of degradations (beam: found best / mean ranking; seconds exhaustive vs beam, median):\n")
    print("| degradations | samples | exhaustive s | " + " | ".join(f"beam {w}: found, ranking, s" for w in widths) + " |")
    print("|---|---|---|" + "---|" * len(widths))
    by = defaultdict(list)
    for r in rows:
        by[r["k"]].append(r)
    for k in sorted(by):
        rs = by[k]
        cells = []
        for w in widths:
            b = [r["beams"][w] for r in rs if w in r["beams"]]
            cells.append(f"{100 * statistics.fmean(x['found_best'] for x in b):.0f}%, {statistics.fmean(x['ranking'] for x in b):.2f}%, "
                         f"{statistics.median(x['seconds'] for x in b):.2f}")
        print(f"| {k} | {len(rs)} | {statistics.median(r['exhaustive_seconds'] for r in rs):.2f} | " + " | ".join(cells) + " |")


def report_in_frame(args) -> None:
    """This run's labelers (its exhaustive search's best, each beam's pick) judged in the frame of
    another run's saved exhaustive scores on the same samples (``--frame``, a ``--save-scores`` run,
    e.g. float32 tools where this run had bfloat16 ones); speed against that run's exhaustive search."""
    rows = {r["sample"]: r for r in _rows([args.out, *args.more])}
    frame = {r["sample"]: r for r in _rows(args.frame) if "scores" in r}
    common = sorted(set(rows) & set(frame))
    if not common:
        raise SystemExit(f"{args.out}: no sample in common with the --frame rows that kept their scores")
    ex_total = sum(frame[i]["exhaustive_seconds"] for i in common)
    labelers = {"exhaustive": lambda r: (r["best"], r["exhaustive_seconds"])}
    for w in sorted({w for i in common for w in rows[i]["beams"]}, key=int):
        labelers[f"beam, width {w}"] = lambda r, w=w: (r["beams"][w]["pick"], r["beams"][w]["seconds"])
    print(f"{len(common)} samples, judged among the --frame run's candidates; its exhaustive search: {ex_total:.0f} s\n")
    print("| this run's labeler | finds the frame's best | ranking (mean %) | regret (mean / max) | total time | faster than the frame's exhaustive |")
    print("|---|---|---|---|---|---|")
    judged = {}
    for name, pick_of in labelers.items():
        picks = [pick_of(rows[i]) for i in common]
        judged[name] = [in_exhaustive_frame(frame[i], pick) for i, (pick, _) in zip(common, picks)]
        j, seconds = judged[name], sum(sec for _, sec in picks)
        print(f"| {name} | {100 * statistics.fmean(x['found_best'] for x in j):.1f}% | "
              f"{statistics.fmean(x['ranking'] for x in j):.2f}% | {statistics.fmean(x['regret'] for x in j):.3f} / "
              f"{max(x['regret'] for x in j):.3f} | {seconds:.0f} s | {ex_total / seconds:.2f}x |")
    missed = [(i, j) for i, j in zip(common, judged["exhaustive"]) if not j["found_best"]]
    n, near = len(missed), sum(j["regret"] < 0.05 for _, j in missed)
    print(f"\nthis run's exhaustive best is another pipeline on {n} samples, {near} of them near-ties (regret < 0.05);")
    shared = [i for i in common if "scores" in rows[i]]  # both runs kept every pipeline's metrics
    if shared:
        m = frame[shared[0]]["scores"]["metrics"].index("psnr")
        gaps = np.array([abs(v[m] - rows[i]["scores"]["candidates"][k][m]) for i in shared
                         for k, v in frame[i]["scores"]["candidates"].items() if k in rows[i]["scores"]["candidates"]])
        print(f"the same pipeline's PSNR in the two runs differs by {np.median(gaps):.3f} dB (median), "
              f"{np.percentile(gaps, 90):.3f} (90th percentile), {np.percentile(gaps, 99):.2f} (99th), {gaps.max():.2f} (max)")
    print("found the frame's best, on the samples with / without each degradation:")
    for d in sorted({d for i in common for d in rows[i].get("combo", ())}):
        with_d = [i for i in common if d in rows[i].get("combo", ())]
        miss_with = sum(1 for i, _ in missed if i in with_d)
        print(f"  {d}: {100 * (1 - miss_with / len(with_d)):.1f}% of {len(with_d)} / "
              f"{100 * (1 - (n - miss_with) / max(1, len(common) - len(with_d))):.1f}% of {len(common) - len(with_d)}; "
              f"misses with regret >= 0.05: {sum(1 for i, j in missed if i in with_d and j['regret'] >= 0.05)}")


def _rows(files) -> list[dict]:
    return [json.loads(line) for f in files for line in _text(f).splitlines() if line.strip()]


def _count(rows):
    c = defaultdict(int)
    for r in rows:
        c[r["k"]] += 1
    return dict(c)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="JSON lines, one per sample (appended; resumable)")
    ap.add_argument("--samples", type=int, default=100, help="samples 0..N-1 (with --start: START..N-1)")
    ap.add_argument("--start", type=int, default=0, help="first sample (split a run over processes: one --out each)")
    ap.add_argument("--more", nargs="*", default=[], help="(--report) further JSON-lines files of the same run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--widths", default="4,8")
    ap.add_argument("--images", nargs="+", default=IMAGES)
    ap.add_argument("--save-scores", action="store_true", help="keep every pipeline's and internal node's metrics in the row")
    ap.add_argument("--report", action="store_true", help="print the tables of --out and measure nothing")
    ap.add_argument("--frame", nargs="*", default=[], help="(--report) judge --out's picks among these --save-scores rows' candidates")
    args = ap.parse_args()
    if args.report:
        (report_in_frame if args.frame else report)(args)
    else:
        measure(args)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
