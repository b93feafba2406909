"""The pipeline benchmark: RestoreAgent's "ranking" of each planner's pipeline among all pipelines.

For each sample: an image (centre-cropped), a degradation combination, the degraded image, the
exhaustive search over its candidate pipelines, then each planner's plan scored in that frame.

Planners run one-shot (one answer, the whole plan executed), except the stepwise names
(``vlm_stepwise``): the agent's stepwise loop (:func:`restoreagent.agent.stepwise_restore`, what
``restoreagent run --auto --stepwise`` does, with its default quality check) on the degraded image,
scored by the pipeline it kept.

Searches and each planner's per-sample row are cached under ``OUT/samples/`` so an interrupted run
resumes and a planner added to an existing folder is the only thing computed. A row is reused only
while its planner's fingerprint (its code, the stepwise loop's code, the model folder of a learned
planner) is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import agent, quality
from .agent import stepwise_restore
from .degradations import degrade
from .errors import RestoreAgentError, UnknownNameError
from .executor import execute
from .imageio import atomic_write_text, center_crop, list_images, load_image
from .jobs.bench import BenchConfig
from .plan import Plan
from .planners import PlanRequest, get_planner, planner_names
from .sampling import sample_plan
from .scoring import Scorer
from .search import default_toolset, exhaustive_search, search_result_from_json
from .tasks import parse_combos, tasks_for

# RestoreAgent's test combinations (anchors.md).
RESTOREAGENT_COMBOS = [
    ["noise", "jpeg"],
    ["low_light", "noise"],
    ["motion_blur", "noise", "jpeg"],
    ["rain", "noise", "jpeg"],
    ["haze", "noise", "jpeg"],
    ["haze", "rain", "noise", "jpeg"],
    ["motion_blur", "rain", "noise", "jpeg"],
]

# Bench name -> the planner run through the agent's stepwise loop (it sees only the image and the
# execution history, so only planners that need no truth can be run this way).
STEPWISE_PLANNERS = {"vlm_stepwise": "vlm"}
# Planners that take another model folder as ``NAME@FOLDER`` (a candidate beside the shipped one).
FOLDER_PLANNERS = ("vlm", "ranker", "ranker+truth", "verify")
# Bump when a row's content or its scoring changes: cached rows of other versions are recomputed.
ROW_VERSION = 1


def bench_planner_names() -> list[str]:
    """Names ``--planners`` accepts: every planner (one-shot) and the stepwise ones."""
    return planner_names() + list(STEPWISE_PLANNERS)


def split_planner_name(name: str) -> tuple[str, str | None]:
    """``vlm@runs/x/final`` -> ``("vlm", "runs/x/final")``: a VLM planner from another folder, so a
    candidate planner is benchmarked beside the shipped one in the same run; plain names -> (name, None)."""
    kind, sep, path = name.partition("@")
    return kind, (path if sep else None)


def check_planner_names(names) -> None:
    known = bench_planner_names()
    for name in names:
        kind, path = split_planner_name(name)
        if kind not in known:
            raise UnknownNameError(f"unknown planner {name!r}; planners: {', '.join(known)} (vlm@FOLDER for another VLM planner)")
        if path is not None:
            if STEPWISE_PLANNERS.get(kind, kind) not in FOLDER_PLANNERS:
                raise RestoreAgentError(f"{name}: only {', '.join(FOLDER_PLANNERS)} and vlm_stepwise take a model folder (@FOLDER)")
            if not Path(path).exists():
                raise RestoreAgentError(f"{name}: planner folder or file {path!r} does not exist")
    if len(set(names)) != len(names):
        raise RestoreAgentError(f"a planner is named twice in {', '.join(names)}")


def _sample_key(sample: dict, crop, metrics) -> str:
    """Names a sample's cached search: its image, degradations, seed, crop, metrics and the candidate
    tools of its tasks (tools of other tasks joining the catalogue do not invalidate it)."""
    toolset = default_toolset(tasks_for(sample["combo"]))
    key = json.dumps([str(sample["image"]), sample["combo"], sample["seed"], crop, toolset, list(metrics)])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def prepare_sample(sample: dict, crop) -> tuple[np.ndarray, np.ndarray, dict]:
    clean = center_crop(load_image(sample["image"]), crop)
    degraded, record = degrade(clean, chain=", ".join(sample["combo"]), seed=sample["seed"])
    return clean, degraded, record


def evaluate_plan(plan: Plan, search, degraded, clean, scorer, restored: np.ndarray | None = None) -> dict:
    """Metrics, balanced score and ranking of a pipeline in the sample's search frame.

    A candidate of the search takes the search's scores; any other pipeline (e.g. the VLM saw
    other degradations) is scored on its output image in the same frame (candidate mean/std):
    ``restored`` when given (the image the stepwise loop ended with), else ``plan`` executed on
    ``degraded``.
    """
    cand = search.find(plan)
    if cand is not None:
        metrics, balanced = cand.metrics, cand.balanced
    else:
        if restored is None:
            restored, _ = execute(plan, degraded)
        metrics = scorer(restored, clean)
        balanced = search.balanced_of(metrics)
    return {
        "metrics": metrics,
        "balanced": balanced,
        "ranking": search.ranking_of_score(balanced),
        "in_candidates": cand is not None,
    }


def evaluate_answer(answer, search, degraded, clean, scorer) -> dict:
    """A one-shot answer's plan scored in the sample's search frame (:func:`evaluate_plan`)."""
    return evaluate_plan(answer.plan, search, degraded, clean, scorer)


class _TimedPlanner:
    """Passes requests through to a planner and adds up the time spent in its calls."""

    def __init__(self, planner):
        self.planner, self.name, self.seconds = planner, planner.name, 0.0

    def plan(self, request: PlanRequest):
        t0 = time.perf_counter()
        try:
            return self.planner.plan(request)
        finally:
            self.seconds += time.perf_counter() - t0


def run_planner(name: str, planner, sample: dict, record: dict, degraded, clean, search, scorer) -> dict:
    """One planner on one sample: its plan, what it saw, its cost and its scores in the search frame."""
    timed = _TimedPlanner(planner)
    if split_planner_name(name)[0] in STEPWISE_PLANNERS:
        t0 = time.perf_counter()
        run = stepwise_restore(degraded, timed)
        run_seconds = time.perf_counter() - t0
        first = run.answers[0]
        return {
            "mode": "stepwise",
            "plan": run.kept_plan.text(),  # the pipeline kept: executed steps minus rolled-back ones
            "saw": list(first.degradations),  # what its first answer named
            "plan_seconds": timed.seconds,  # all its planner calls on this image
            "run_seconds": run_seconds,  # the whole loop: planner calls and tool steps
            "planner_calls": run.planner_calls,
            "rollbacks": run.rollbacks,  # the planner's and the quality check's (steps[i]["rolled_back_by"])
            "quality_rollbacks": run.quality_rollbacks,
            "answers": [a.text() for a in run.answers],
            "steps": [dict(s) for s in run.steps],
            **evaluate_plan(run.kept_plan, search, degraded, clean, scorer, restored=run.image),
        }
    answer = timed.plan(
        PlanRequest(
            image=degraded, degradations=tuple(record["degradations"]), search=search, seed=sample["seed"]
        )
    )
    return {
        "mode": "one-shot",
        "plan": answer.plan.text(),
        "saw": list(answer.degradations),
        "plan_seconds": timed.seconds,
        "planner_calls": 1,
        "rollbacks": 0,
        **evaluate_answer(answer, search, degraded, clean, scorer),
    }


def _hash_file(h, path: Path) -> None:
    h.update(path.name.encode() + b"\0" + str(path.stat().st_size).encode() + b"\0")
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def _code_files(module: str) -> list[Path]:
    """A module's source: its package folder's .py files when it is in one, else its file."""
    import sys

    file = getattr(sys.modules.get(module), "__file__", None)
    if not file:
        return []
    return sorted(Path(file).parent.glob("*.py")) if "." in module else [Path(file)]


def planner_fingerprint(name: str, planner) -> str:
    """What a planner's cached rows depend on besides the sample: the bench row version, the
    planner's code, the stepwise loop's and quality checks' code for a stepwise name, the catalogue (fixed recipe,
    severity ranges, tools) and the files of its model folder (``planner.source``, the VLM's)."""
    h = hashlib.sha256(
        f"{ROW_VERSION}\0{name}\0{type(planner).__module__}.{type(planner).__qualname__}".encode()
    )
    files = _code_files(type(planner).__module__)
    if split_planner_name(name)[0] in STEPWISE_PLANNERS:
        files += [Path(agent.__file__), Path(quality.__file__)]  # the loop and its default quality check
    files += sorted((Path(__file__).parent / "catalog").glob("*.yaml"))
    for f in files:
        _hash_file(h, f)
    source = getattr(planner, "source", None)
    if source is not None:
        h.update(f"\0source\0{source}".encode())
        if Path(source).is_dir():
            for f in sorted(p for p in Path(source).rglob("*") if p.is_file()):
                _hash_file(h, f)
        elif Path(source).is_file():  # a single weight file (the verifier's)
            _hash_file(h, Path(source))
    return h.hexdigest()[:16]


def run_bench(cfg: BenchConfig, progress: bool = True) -> dict:
    from tqdm.auto import tqdm


    files = list_images(cfg.images, recursive=False)
    combos = parse_combos(Path(cfg.combos_file).read_text(), cfg.combos_file) if cfg.combos_file else None
    check_planner_names(cfg.planners)
    out = Path(cfg.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    scorer = Scorer(cfg.metrics)
    loaded = {}  # one instance per underlying planner (vlm and vlm_stepwise share the model)
    planners = {}
    for name in cfg.planners:
        kind, path = split_planner_name(name)
        base = (STEPWISE_PLANNERS.get(kind, kind), path)
        if base not in loaded:
            loaded[base] = get_planner(base[0], **({"model": path} if path else {}))
        planners[name] = loaded[base]
    fingerprints = {name: planner_fingerprint(name, p) for name, p in planners.items()}
    rows = []
    bar = tqdm(sample_plan(cfg, files, combos), desc="bench", unit="sample", disable=not progress)
    for sample in bar:
        clean, degraded, record = prepare_sample(sample, cfg.crop)
        stem = f"{sample['index']:05d}_{_sample_key(sample, cfg.crop, scorer.metrics)}"
        cache = out / "samples" / f"{stem}.json"
        if cache.exists():
            search = search_result_from_json(json.loads(cache.read_text()))
        else:
            search = exhaustive_search(degraded, clean, degradations=record["degradations"], scorer=scorer)
            atomic_write_text(cache, json.dumps(search.to_json()))
        degraded_metrics = scorer(degraded, clean)
        for name, planner in planners.items():
            row_cache = out / "samples" / f"{stem}.{name}.json"
            if row_cache.exists():
                cached = json.loads(row_cache.read_text())
                if cached.get("fingerprint") == fingerprints[name]:
                    rows.append(cached["row"])
                    continue
            result = run_planner(name, planner, sample, record, degraded, clean, search, scorer)
            row = {
                "sample": sample["index"],
                "image": Path(sample["image"]).name,
                "combo": " + ".join(record["degradations"]),
                "n_degradations": len(record["degradations"]),
                "planner": name,
                **result,
                "degradations_correct": set(result["saw"]) == set(record["degradations"]),
                "n_candidates": len(search.candidates),
                "tool_calls": search.tool_calls,
                "naive_tool_calls": search.naive_tool_calls,
                "search_seconds": search.seconds,
                "degraded_metrics": degraded_metrics,
            }
            atomic_write_text(
                row_cache, json.dumps({"fingerprint": fingerprints[name], "row": row}, default=str)
            )
            rows.append(row)
        bar.set_postfix(cands=len(search.candidates))
    result = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "metrics": list(scorer.metrics),
        "rows": rows,
        "summary": summarize(rows),
    }
    atomic_write_text(out / "results.json", json.dumps(result, indent=1, default=str))
    atomic_write_text(out / "results.md", results_markdown(result))
    return result


def _agg(rows: list[dict]) -> dict:
    rk = [r["ranking"] for r in rows]
    return {
        "n": len(rows),
        "ranking_mean": statistics.fmean(rk),
        "ranking_median": statistics.median(rk),
        "balanced_mean": statistics.fmean(r["balanced"] for r in rows),
        "psnr_mean": statistics.fmean(r["metrics"]["psnr"] for r in rows),
        "ssim_mean": statistics.fmean(r["metrics"]["ssim"] for r in rows),
        "degradations_correct": statistics.fmean(float(r["degradations_correct"]) for r in rows),
        "plan_ms_median": 1000 * statistics.median(r["plan_seconds"] for r in rows),
        "planner_calls_mean": statistics.fmean(r["planner_calls"] for r in rows),
        "rollbacks_mean": statistics.fmean(r["rollbacks"] for r in rows),
    }


def summarize(rows: list[dict]) -> dict:
    by_planner, by_combo = defaultdict(list), defaultdict(list)
    for r in rows:
        by_planner[r["planner"]].append(r)
        by_combo[(r["planner"], r["combo"])].append(r)
    first = [r for r in rows if r["planner"] == rows[0]["planner"]] if rows else []
    return {
        "planners": {p: _agg(rs) for p, rs in by_planner.items()},
        "by_combo": {f"{p} | {c}": _agg(rs) for (p, c), rs in sorted(by_combo.items())},
        "search": {
            "samples": len(first),
            "tool_calls_mean": statistics.fmean(r["tool_calls"] for r in first) if first else 0,
            "naive_tool_calls_mean": statistics.fmean(r["naive_tool_calls"] for r in first) if first else 0,
            "search_seconds_median": statistics.median(r["search_seconds"] for r in first) if first else 0,
            "degraded_psnr_mean": statistics.fmean(r["degraded_metrics"]["psnr"] for r in first)
            if first
            else 0,
        },
    }


def results_markdown(result: dict) -> str:
    s = result["summary"]
    cfg = result["config"]
    lines = [
        f"Samples: {s['search']['samples']} from `{cfg['images']}` (crop {cfg['crop']}, seed {cfg['seed']}); "
        f"metrics in the balanced score: {', '.join(result['metrics'])}. "
        f"Degraded input PSNR (mean): {s['search']['degraded_psnr_mean']:.2f} dB.",
        "",
        "| planner | n | ranking mean % (lower is better) | ranking median % | balanced | PSNR | SSIM | exact degradation set | plan ms (median) | planner calls / image | rollbacks / image |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p, a in s["planners"].items():
        lines.append(
            f"| {p} | {a['n']} | {a['ranking_mean']:.1f} | {a['ranking_median']:.1f} | {a['balanced_mean']:.2f} | "
            f"{a['psnr_mean']:.2f} | {a['ssim_mean']:.4f} | {100 * a['degradations_correct']:.0f}% | {a['plan_ms_median']:.1f} | "
            f"{a['planner_calls_mean']:.2f} | {a['rollbacks_mean']:.2f} |"
        )
    if any(split_planner_name(p)[0] in STEPWISE_PLANNERS for p in s["planners"]):
        lines += [
            "",
            "A stepwise planner re-plans after every step and rolls back the steps it judges harmful; it is ranked "
            "by the pipeline it kept, its exact degradation set is that of its first answer, and its plan ms add up "
            "all its planner calls on the image.",
        ]
    lines += [
        "",
        "Per planner and combination (mean ranking %, n):",
        "",
        "| planner | combination | n | ranking % | PSNR |",
        "|---|---|---|---|---|",
    ]
    for key, a in s["by_combo"].items():
        p, c = key.split(" | ", 1)
        lines.append(f"| {p} | {c} | {a['n']} | {a['ranking_mean']:.1f} | {a['psnr_mean']:.2f} |")
    sr = s["search"]
    lines += [
        "",
        f"Search: {sr['tool_calls_mean']:.0f} tool calls per sample with the prefix tree vs "
        f"{sr['naive_tool_calls_mean']:.0f} naive (mean); median search time {sr['search_seconds_median']:.2f} s per sample.",
    ]
    return "\n".join(lines) + "\n"
