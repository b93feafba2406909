"""Labelers judged on an exhaustive search's saved scores, without running a network (docs/labeling.md).

    # once (minutes per sample at four degradations): every pipeline's and internal node's metrics
    OMP_NUM_THREADS=1 .venv/bin/python eval/label_beam.py --out /tmp/ex.jsonl --samples 160 --widths "" --save-scores
    # then in seconds, any number of times: the beam at several widths and polish lengths
    .venv/bin/python eval/label_replay.py /tmp/ex.jsonl [--widths 1,2,3] [--polish 0,3] [--check MEASURED.jsonl]

The labeler's samples 0-159 (seed 0, the toolbox of 2026-11-30) are committed, gzipped:
``eval/reference/exhaustive_scores_0-159.jsonl.gz`` (the default; 0.35 MB).

The real beam code (:func:`restoreagent.labeling.beam.beam_search`) runs against stand-ins for the
tools and the scorer: an "image" is a one-element array holding the id of the pipeline prefix that
made it, a tool maps it to the prefix one step longer, and the scorer returns that prefix's saved
metrics. So the replayed beam makes the decisions the real one makes on those scores, and what it
costs is counted in tool calls (against the exhaustive search's calls on the same sample; a call
costs 1.5-51 ms at 128 px depending on the tool, docs/labeling.md section 1). ``--check`` compares
the replayed picks with the picks of a measured run (``eval/label_beam.py`` rows with ``beams``).

``--severity-keep 1,2`` also replays the issue's other suggestion: the exhaustive search over only
the tools the sample's *true* severity makes plausible (per task, the ``N`` tools whose severity
ranges, ``catalog.learned.severity_ranges``, lie nearest the recorded parameter; a tool without a
range always stays). The degradation records are rebuilt from the labeler's seed, so this needs the
train photos (``--images``).
"""

import argparse
import gzip
import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from restoreagent.catalog.learned import severity_ranges
from restoreagent.labeling.beam import beam_search
from restoreagent.plan import Plan, Step
from restoreagent.scoring import ZStats, ranking_percent
from restoreagent.search import count_tree_calls
from restoreagent.splits import TRAIN_FOLDERS
from restoreagent.tasks import DEGRADATION_FOR_TASK

REFERENCE = Path(__file__).parent / "reference" / "exhaustive_scores_0-159.jsonl.gz"


def _text(path) -> str:
    path = Path(path)
    return gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()


def saved_scores(search, decimals: int | None = 5) -> dict:
    """What ``eval/label_beam.py --save-scores`` keeps of an exhaustive search (``record_nodes=True``):
    every pipeline's and internal node's metrics, by plan text."""
    names = list(search.metric_names)

    def row(metrics):
        return [round(metrics[m], decimals) if decimals is not None else metrics[m] for m in names]

    return {"metrics": names, "toolset": search.toolset, "tasks": list(search.tasks),
            "candidates": {c.plan.text(): row(c.metrics) for c in search.candidates},
            "nodes": {Plan(n.steps).text(): row(n.metrics) for n in search.nodes}}


class Replay:
    """Tools and scorer of one saved sample: prefixes of the pipeline tree stand for images."""

    def __init__(self, row: dict):
        s = row["scores"]
        self.metrics = tuple(s["metrics"])
        self.tasks = tuple(s["tasks"])
        self.toolset = s["toolset"]
        self.task_of = {tool: task for task, tools in self.toolset.items() for tool in tools}
        self.saved = {**s["nodes"], **s["candidates"]}  # prefix text -> metrics
        self.prefixes: list[tuple[Step, ...]] = [()]
        self.ids: dict[tuple[Step, ...], int] = {(): 0}

    def image(self, steps: tuple[Step, ...]) -> np.ndarray:
        if steps not in self.ids:
            self.ids[steps] = len(self.prefixes)
            self.prefixes.append(steps)
        return np.array([float(self.ids[steps])], dtype=np.float32)  # ids stay exact in float32 (< 2**24)

    def tool(self, name: str):
        replay, step = self, Step(self.task_of[name], name)

        class _Tool:
            def __call__(self, image):
                return replay.image(replay.prefixes[int(image[0])] + (step,))

            def batch(self, images):
                return [self(im) for im in images]

        return _Tool()

    def __call__(self, image, reference) -> dict[str, float]:  # the scorer
        key = Plan(self.prefixes[int(image[0])]).text()
        return dict(zip(self.metrics, self.saved[key])) if key in self.saved else dict.fromkeys(self.metrics, 0.0)


def in_exhaustive_frame(row: dict, pick: str) -> dict:
    """A labeler's ``pick`` judged among every candidate of the saved exhaustive search: is it the
    best, its ranking (% strictly better) and its regret (the best's balanced score minus its own)."""
    metrics = row["scores"]["metrics"]
    cands = {k: dict(zip(metrics, v)) for k, v in row["scores"]["candidates"].items()}
    frame = ZStats.of(list(cands.values()), metrics)
    balanced = {k: frame.balanced(v) for k, v in cands.items()}
    return {"found_best": pick == row["best"], "ranking": ranking_percent(balanced[pick], list(balanced.values())),
            "regret": balanced[row["best"]] - balanced[pick]}


def judge(row: dict, width: int, polish: int) -> dict:
    replay = Replay(row)
    result = beam_search(replay.image(()), None, tasks=replay.tasks, toolset=replay.toolset, scorer=replay,
                         width=width, polish=polish, tools=replay.tool)
    pick = result.best.plan.text()
    return {"pick": pick, **in_exhaustive_frame(row, pick), "calls": result.tool_calls}


def plausible_tools(task: str, tools: list[str], params: dict, keep: int) -> list[str]:
    """``task``'s tools that the recorded ``params`` make plausible: those without a severity range,
    and the ``keep`` whose ranges lie nearest the recorded value (distance 0 inside a range)."""
    rule = severity_ranges().get(task)
    value = params.get(rule["param"]) if rule else None
    if value is None:
        return list(tools)
    ranged = {t: r for t, r in rule["tools"].items() if t in tools}

    def distance(t):
        lo, hi = ranged[t]
        return 0.0 if lo <= value < hi else min(abs(value - lo), abs(value - hi))

    return [t for t in tools if t not in ranged] + sorted(ranged, key=distance)[:keep]


def judge_severity_restricted(row: dict, params: dict, keep: int) -> dict:
    """The exhaustive search over the plausible tools only: its pick is the best of the saved
    candidates those tools make (balanced in its own, smaller frame), judged in the full frame."""
    toolset = row["scores"]["toolset"]
    allowed = {t: plausible_tools(t, v, params[DEGRADATION_FOR_TASK[t]], keep) for t, v in toolset.items()}
    metrics = row["scores"]["metrics"]
    sub = {}
    for plan, values in row["scores"]["candidates"].items():
        steps = [s.split(":") for s in plan.split(", ")]
        if all(tool in allowed[task] for task, tool in steps):
            sub[plan] = dict(zip(metrics, values))
    frame = ZStats.of(list(sub.values()), metrics)
    pick = max(sub, key=lambda k: frame.balanced(sub[k]))
    return {"pick": pick, **in_exhaustive_frame(row, pick), "calls": count_tree_calls(allowed)}


def recorded_params(rows: list[dict], images) -> dict[int, dict]:
    """sample -> {degradation: its parameters}, rebuilt from the labeler's seed (the records replay exactly)."""
    from restoreagent.degradations import degrade
    from restoreagent.jobs.label import LabelConfig
    from restoreagent.labeling.labeler import plan_labels

    plan = plan_labels(LabelConfig(images=tuple(images), out="unused", samples=max(r["sample"] for r in rows) + 1, seed=0))
    out = {}
    for r in rows:
        p = plan.payload(r["sample"])
        _, record = degrade(p["clean"], chain=", ".join(p["combo"]), seed=p["deg_seed"])
        out[r["sample"]] = {c["name"]: c["params"] for c in record["chain"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scores", nargs="*", default=[str(REFERENCE)], help="JSON lines (.gz too) of eval/label_beam.py --save-scores")
    ap.add_argument("--widths", default="1,2,3")
    ap.add_argument("--polish", default="3", help="polish moves, comma-separated")
    ap.add_argument("--check", nargs="*", default=[], help="measured eval/label_beam.py rows: do the replayed picks agree?")
    ap.add_argument("--severity-keep", default="", help="also the exhaustive search over the N plausible tools per task (comma-separated N)")
    ap.add_argument("--images", nargs="+", default=list(TRAIN_FOLDERS), help="(--severity-keep) the labeler's photo folders")
    args = ap.parse_args()
    rows = [json.loads(line) for f in args.scores for line in _text(f).splitlines() if line.strip()]
    rows = sorted({r["sample"]: r for r in rows if "scores" in r}.values(), key=lambda r: r["sample"])
    measured = {}
    for f in args.check:
        for line in _text(f).splitlines():
            if line.strip():
                r = json.loads(line)
                measured[r["sample"]] = r
    ks = sorted({r["k"] for r in rows})
    print(f"{len(rows)} samples (samples {rows[0]['sample']}-{rows[-1]['sample']}; "
          + ", ".join(f"{k} degradations: {sum(r['k'] == k for r in rows)}" for k in ks) + ")\n")
    ex_calls = {r["sample"]: r["exhaustive_calls"] for r in rows}
    total = sum(ex_calls.values())
    small = [r["sample"] for r in rows if r["k"] < ks[-1]]  # the small trees, which bound the speed-up
    print("share of the exhaustive search's tool calls: " + ", ".join(
        f"{k} degr. {100 * sum(r['exhaustive_calls'] for r in rows if r['k'] == k) / total:.1f}%" for k in ks) + "\n")
    print("| labeler | finds the exhaustive best | ranking (mean %) | regret (mean / max) | tool calls (mean) "
          "| fewer calls than exhaustive (total) | " + " | ".join(f"{k} degr.: found, fewer calls" for k in ks)
          + f" | its calls on 1-{ks[-1] - 1} degr. (% of all exhaustive calls) |")
    print("|---|---|---|---|---|---|" + "---|" * (len(ks) + 1))
    by = defaultdict(list)
    for r in rows:
        by[r["k"]].append(r["sample"])

    def print_row(name: str, res: dict) -> None:
        cells = [f"{100 * statistics.fmean(res[s]['found_best'] for s in by[k]):.0f}%, "
                 f"{sum(ex_calls[s] for s in by[k]) / sum(res[s]['calls'] for s in by[k]):.1f}x" for k in ks]
        v = list(res.values())
        print(f"| {name} | {100 * statistics.fmean(x['found_best'] for x in v):.1f}% | "
              f"{statistics.fmean(x['ranking'] for x in v):.2f}% | {statistics.fmean(x['regret'] for x in v):.3f} / "
              f"{max(x['regret'] for x in v):.3f} | {statistics.fmean(x['calls'] for x in v):.0f} | "
              f"{total / sum(x['calls'] for x in v):.1f}x | " + " | ".join(cells)
              + f" | {100 * sum(res[s]['calls'] for s in small) / total:.1f}% |")

    if args.severity_keep:
        params = recorded_params(rows, args.images)
        for keep in (int(n) for n in args.severity_keep.split(",")):
            print_row(f"exhaustive over the {keep} tool(s) nearest the true severity",
                      {r["sample"]: judge_severity_restricted(r, params[r["sample"]], keep) for r in rows})
    for polish in (int(p) for p in args.polish.split(",")):
        for width in (int(w) for w in args.widths.split(",")):
            res = {r["sample"]: judge(r, width, polish) for r in rows}
            print_row(f"beam, width {width}, polish {polish}", res)
            if measured and polish == 3:
                both = [s for s in res if s in measured and str(width) in measured[s].get("beams", {})]
                if both:
                    same = sum(res[s]["pick"] == measured[s]["beams"][str(width)]["pick"] for s in both)
                    calls = sum(res[s]["calls"] == measured[s]["beams"][str(width)]["calls"] for s in both)
                    print(f"|   (check: the measured run's width-{width} picks: same pick on {same} of {len(both)}, "
                          f"same tool calls on {calls} of {len(both)}) |")


if __name__ == "__main__":
    main()
