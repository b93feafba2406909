"""Proxy labelers: search on a small crop of the sample, confirm the best few at full size (docs/labeling.md).

    # once per proxy size: every pipeline's metrics on the central S px crop of the labeler's samples
    OMP_NUM_THREADS=1 .venv/bin/python eval/label_proxy.py measure --out /tmp/proxy64.jsonl --size 64 --samples 160
    # then in seconds: labelers that search the crop (exhaustive or beam) and run their best M at full size
    .venv/bin/python eval/label_proxy.py replay /tmp/proxy64.jsonl [--full eval/reference/exhaustive_scores_0-159.jsonl.gz] \
        [--costs eval/reference/tool_costs_128_64.json]   # seconds per call: read, or measured (quiet machine) and written

The labeler's samples 0-159 on a 64 px crop are committed (``eval/reference/proxy64_scores_0-159.jsonl.gz``,
0.35 MB, beside the full-size ``exhaustive_scores_0-159.jsonl.gz``), and so is the cost table used in
docs/labeling.md (``tool_costs_128_64.json``, measured on an idle 2-core machine, one thread).

A tool call on a 64 px crop costs about a third of one at 128 px (0.25-0.55 by tool; ``replay`` prints the
table), so a search on the crop is about 3x cheaper. The crop's scores rank pipelines like the full
sample's only roughly, so the proxy keeps its ``M`` best candidates and runs them at full size
(shared prefixes once), where the clean photo decides. Judged like the beam (``eval/label_replay.py``):
found the exhaustive best, its ranking and regret in the full exhaustive frame; cost in seconds from
each tool's measured time per call at both sizes (and the scorer's), against the exhaustive search's.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from label_beam import labeler_samples  # eval/, beside this script
from label_replay import REFERENCE, Replay, _text, in_exhaustive_frame, saved_scores

from restoreagent.degradations import degrade
from restoreagent.labeling.beam import beam_search
from restoreagent.labeling.labeler import _scorer
from restoreagent.scoring import ZStats
from restoreagent.search import exhaustive_search
from restoreagent.splits import TRAIN_FOLDERS


def central(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` px square, its corner on the 8 x 8 JPEG grid."""
    h, w = image.shape[:2]
    y, x = (h - size) // 2 // 8 * 8, (w - size) // 2 // 8 * 8
    return np.ascontiguousarray(image[y : y + size, x : x + size])


def measure(args) -> None:
    out = Path(args.out)
    for i, p, degraded, degs, scorer in labeler_samples(args):
        t0 = time.perf_counter()
        ex = exhaustive_search(
            central(degraded, args.size),
            central(p["clean"], args.size),
            degradations=degs,
            toolset=dict(p["toolset"]),
            scorer=scorer,
            record_nodes=True,
        )
        row = {
            "sample": i,
            "k": len(degs),
            "combo": degs,
            "size": args.size,
            "seconds": time.perf_counter() - t0,
            "calls": ex.tool_calls,
            "best": ex.best.plan.text(),
            "scores": saved_scores(ex),
        }
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(i, row["k"], f"{row['seconds']:.1f}s", flush=True)


def tool_costs(size: int, full: int = 128, runs: int = 5) -> dict[str, tuple[float, float]]:
    """Seconds per call of every tool at ``full`` and ``size`` px (one thread), and of the scorer ("score")."""
    from skimage import data

    from restoreagent.tasks import DEGRADATION_FOR_TASK
    from restoreagent.tools.registry import available_tools, get_tool

    torch.set_num_threads(1)
    clean = data.astronaut().astype(np.float32)[100 : 100 + full, 200 : 200 + full] / 255.0
    costs = {}

    def median_time(fn, x):
        fn(x)
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(x)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    for spec in available_tools():
        img, _ = degrade(clean, chain=DEGRADATION_FOR_TASK[spec.task], seed=0)
        tool = get_tool(spec.name)
        costs[spec.name] = (median_time(tool, img), median_time(tool, central(img, size)))
    scorer = _scorer(("psnr", "ssim"))

    def score_at(s):
        reference = central(clean, s)
        return median_time(lambda x: scorer(x, reference), reference)

    costs["score"] = (score_at(full), score_at(size))
    return costs


class CountingReplay(Replay):
    """A replayed sample whose tools note the name of every call (cost is per tool)."""

    def __init__(self, row: dict):
        super().__init__(row)
        self.called: list[str] = []

    def tool(self, name: str):
        inner, called = super().tool(name), self.called

        class _Tool:
            def __call__(self, image):
                called.append(name)
                return inner(image)

            def batch(self, images):
                return [self(im) for im in images]

        return _Tool()


def _metrics(replay: Replay, text: str) -> dict[str, float]:
    return dict(zip(replay.metrics, replay.saved[text]))


def _tools_called(keys) -> list[str]:
    """The tool of each tree edge: the last step of every node and candidate but the root ("none")."""
    return [k.split(", ")[-1].split(":")[1] for k in keys if ":" in k]


def exhaustive_cost(row: dict, cost: dict, at: int) -> float:
    """Seconds of the exhaustive search (every node scored, as the labeler runs it): one call per
    tree edge (the tool of its last step), one score per node and candidate."""
    s = row["scores"]
    return (
        sum(cost[t][at] for t in _tools_called([*s["nodes"], *s["candidates"]]))
        + (len(s["nodes"]) + len(s["candidates"])) * cost["score"][at]
    )


def search_on(row: dict, width: int, polish: int) -> tuple[list[str], list[str], int]:
    """(evaluated candidates' plan texts, tool calls, images scored) of a search replayed on ``row``."""
    if width == 0:
        s = row["scores"]
        calls = _tools_called([*s["nodes"], *s["candidates"]])
        return list(s["candidates"]), calls, len(s["nodes"]) + len(s["candidates"])
    rep = CountingReplay(row)
    res = beam_search(
        rep.image(()),
        None,
        tasks=rep.tasks,
        toolset=rep.toolset,
        scorer=rep,
        width=width,
        polish=polish,
        tools=rep.tool,
    )
    return [c.plan.text() for c in res.candidates], rep.called, len(res.candidates) + len(res.nodes) + 1


def judge_proxy(proxy: dict, full: dict, width: int, polish: int, confirm: int, cost: dict) -> dict:
    """The proxy labeler on one sample: search the crop, run its ``confirm`` best at full size, pick there."""
    prep, frep = Replay(proxy), Replay(full)
    evaluated, calls, scored = search_on(proxy, width, polish)
    rows = {t: _metrics(prep, t) for t in evaluated}
    frame = ZStats.of(list(rows.values()), prep.metrics)
    top = sorted(evaluated, key=lambda t: -frame.balanced(rows[t]))[:confirm]
    seconds = sum(cost[t][1] for t in calls) + scored * cost["score"][1]
    if confirm > 1:
        # at full size: the top plans' distinct prefixes, each one call and one score; the pick weighs
        # PSNR and SSIM by the crop's spread (a frame of a few candidates would be all ties)
        prefixes = {tuple(t.split(", ")[: j + 1]) for t in top for j in range(len(t.split(", ")))}
        seconds += sum(cost[p[-1].split(":")[1]][0] + cost["score"][0] for p in prefixes)
        scale = ZStats(dict.fromkeys(frame.mean, 0.0), frame.std)
        pick = max(top, key=lambda t: scale.balanced(_metrics(frep, t)))
    else:
        pick = top[0]
    return {**in_exhaustive_frame(full, pick), "seconds": seconds}


def judge_full_beam(full: dict, width: int, polish: int, cost: dict) -> dict:
    """The beam labeler at full size, costed the same way."""
    evaluated, calls, scored = search_on(full, width, polish)
    rep = Replay(full)
    rows = {t: _metrics(rep, t) for t in evaluated}
    frame = ZStats.of(list(rows.values()), rep.metrics)
    pick = max(evaluated, key=lambda t: frame.balanced(rows[t]))
    return {
        **in_exhaustive_frame(full, pick),
        "seconds": sum(cost[t][0] for t in calls) + scored * cost["score"][0],
    }


def replay(args) -> None:
    proxy = {r["sample"]: r for f in args.proxy for r in map(json.loads, filter(None, _text(f).splitlines()))}
    full = {
        r["sample"]: r
        for f in args.full
        for r in map(json.loads, filter(None, _text(f).splitlines()))
        if "scores" in r
    }
    samples = sorted(set(proxy) & set(full))
    size = proxy[samples[0]]["size"]
    if args.costs and Path(args.costs).exists():
        cost = {k: tuple(v) for k, v in json.loads(Path(args.costs).read_text()).items()}
    else:
        cost = tool_costs(size)
        if args.costs:
            Path(args.costs).write_text(json.dumps(cost, indent=1))
    print(
        f"seconds per call, one thread, 128 px / {size} px:",
        ", ".join(f"{t} {a * 1e3:.1f} / {b * 1e3:.1f} ms" for t, (a, b) in sorted(cost.items())) + "\n",
    )
    ks = sorted({full[s]["k"] for s in samples})
    ex = {s: exhaustive_cost(full[s], cost, 0) for s in samples}
    print(
        f"{len(samples)} samples ("
        + ", ".join(f"{k} degradations: {sum(full[s]['k'] == k for s in samples)}" for k in ks)
        + f"); the exhaustive search: {sum(ex.values()):.0f} s modelled\n"
    )
    print(
        "| labeler | finds the exhaustive best | ranking (mean %) | regret (mean / max) | faster than exhaustive (total) | "
        + " | ".join(f"{k} degr.: found, faster" for k in ks)
        + " |"
    )
    print("|---|---|---|---|---|" + "---|" * len(ks))

    def line(name, res):
        v = list(res.values())
        cells = [
            f"{100 * statistics.fmean(res[s]['found_best'] for s in samples if full[s]['k'] == k):.0f}%, "
            f"{sum(ex[s] for s in samples if full[s]['k'] == k) / sum(res[s]['seconds'] for s in samples if full[s]['k'] == k):.1f}x"
            for k in ks
        ]
        print(
            f"| {name} | {100 * statistics.fmean(x['found_best'] for x in v):.1f}% | {statistics.fmean(x['ranking'] for x in v):.2f}% | "
            f"{statistics.fmean(x['regret'] for x in v):.3f} / {max(x['regret'] for x in v):.3f} | "
            f"{sum(ex.values()) / sum(x['seconds'] for x in v):.1f}x | " + " | ".join(cells) + " |"
        )

    for w in (2, 4):
        line(
            f"beam, width {w}, polish {args.polish}, at 128 px",
            {s: judge_full_beam(full[s], w, args.polish, cost) for s in samples},
        )
    for w in (int(x) for x in args.widths.split(",")):
        for m in (int(x) for x in args.confirm.split(",")):
            name = (
                f"{'exhaustive' if w == 0 else f'beam w{w} p{args.polish}'} on {size} px, best {m} at 128 px"
            )
            line(name, {s: judge_proxy(proxy[s], full[s], w, args.polish, m, cost) for s in samples})


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    m = sub.add_parser(
        "measure", help="exhaustive search on the central crop of each sample, every score saved"
    )
    m.add_argument("--out", required=True, help="JSON lines, one per sample (appended; resumable)")
    m.add_argument("--size", type=int, default=64, help="the crop's side (px)")
    m.add_argument("--samples", type=int, default=160)
    m.add_argument("--start", type=int, default=0)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--images", nargs="+", default=list(TRAIN_FOLDERS))
    r = sub.add_parser(
        "replay", help="proxy labelers judged against the full exhaustive search's saved scores"
    )
    r.add_argument("proxy", nargs="+", help="JSON lines of `measure` (one size)")
    r.add_argument(
        "--full",
        nargs="+",
        default=[str(REFERENCE)],
        help="the full-size exhaustive scores (eval/label_beam.py --save-scores)",
    )
    r.add_argument("--confirm", default="1,2,3,4,6", help="how many of the proxy's best run at full size")
    r.add_argument(
        "--widths", default="2,4", help="beam widths searched on the crop (0: exhaustive on the crop)"
    )
    r.add_argument("--polish", type=int, default=3)
    r.add_argument(
        "--costs",
        help="a JSON file of seconds per call at both sizes: read if it exists, else measured (quiet machine!) and written",
    )
    args = ap.parse_args()
    (measure if args.mode == "measure" else replay)(args)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
