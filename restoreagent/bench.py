"""The pipeline benchmark: RestoreAgent's "ranking" of each planner's pipeline among all pipelines.

For each sample: an image (centre-cropped), a degradation combination, the degraded image, the
exhaustive search over its candidate pipelines, then each planner's plan scored in that frame.
Searches are cached per sample under ``OUT/samples/`` so an interrupted run resumes and new
planners can be added without searching again.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .degradations import degrade, sample_combination
from .errors import RestoreAgentError
from .executor import execute
from .imageio import atomic_write_text, center_crop, list_images, load_image
from .planners import PlanRequest, get_planner
from .scoring import Scorer
from .search import exhaustive_search, search_result_from_json
from .tasks import physical_order

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


@dataclass
class BenchConfig:
    images: str
    out: str
    samples: int = 50
    seed: int = 0
    planners: tuple[str, ...] = ("random", "fixed", "oracle")
    combos_file: str | None = None
    crop: int | None = 128
    metrics: tuple[str, ...] | None = None  # None: psnr, ssim (+ lpips, dists when present)
    max_degradations: int = 4


def parse_combos(text: str, source: str = "combos") -> list[list[str]]:
    """One combination per line, written like ``noise + jpeg``; '#' starts a comment."""
    combos = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        names = [x.strip() for x in line.split("+")]
        try:
            names = physical_order(names)
        except RestoreAgentError as e:
            raise RestoreAgentError(f"{source}:{n}: {e}") from None
        if len(set(names)) != len(names):
            raise RestoreAgentError(f"{source}:{n}: a degradation appears twice in {line!r}")
        combos.append(names)
    if not combos:
        raise RestoreAgentError(f"{source}: no combinations in the file")
    return combos


def sample_plan(cfg: BenchConfig, files: list[Path], combos: list[list[str]] | None) -> list[dict]:
    """Which image and which combination each sample uses (deterministic in the seed)."""
    order = np.random.default_rng([cfg.seed, 1]).permutation(len(files))
    out = []
    for i in range(cfg.samples):
        rng = np.random.default_rng([cfg.seed, 2, i])
        if combos:
            combo = combos[i % len(combos)]
        else:
            combo = sample_combination(rng, int(rng.integers(1, cfg.max_degradations + 1)))
        out.append(
            {
                "index": i,
                "image": files[order[i % len(files)]],
                "combo": combo,
                "seed": cfg.seed * 1_000_003 + i,
            }
        )
    return out


def _sample_key(sample: dict, crop, toolset_names: str, metrics) -> str:
    key = json.dumps(
        [str(sample["image"]), sample["combo"], sample["seed"], crop, toolset_names, list(metrics)]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def prepare_sample(sample: dict, crop) -> tuple[np.ndarray, np.ndarray, dict]:
    clean = center_crop(load_image(sample["image"]), crop)
    degraded, record = degrade(clean, chain=", ".join(sample["combo"]), seed=sample["seed"])
    return clean, degraded, record


def evaluate_answer(answer, search, degraded, clean, scorer) -> dict:
    """Metrics, balanced score and ranking of a planner's plan in the sample's search frame."""
    cand = search.find(answer.plan)
    if cand is not None:
        metrics, balanced = cand.metrics, cand.balanced
    else:  # the plan is outside the candidate set (e.g. the VLM saw other degradations)
        restored, _ = execute(answer.plan, degraded)
        metrics = scorer(restored, clean)
        balanced = search.balanced_of(metrics)
    return {
        "metrics": metrics,
        "balanced": balanced,
        "ranking": search.ranking_of_score(balanced),
        "in_candidates": cand is not None,
    }


def run_bench(cfg: BenchConfig, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    from .tools.registry import available_tools

    files = list_images(cfg.images, recursive=False)
    combos = parse_combos(Path(cfg.combos_file).read_text(), cfg.combos_file) if cfg.combos_file else None
    out = Path(cfg.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    scorer = Scorer(cfg.metrics)
    planners = {name: get_planner(name) for name in cfg.planners}
    toolset_names = ",".join(s.name for s in available_tools())
    rows = []
    bar = tqdm(sample_plan(cfg, files, combos), desc="bench", unit="sample", disable=not progress)
    for sample in bar:
        clean, degraded, record = prepare_sample(sample, cfg.crop)
        cache = (
            out
            / "samples"
            / f"{sample['index']:05d}_{_sample_key(sample, cfg.crop, toolset_names, scorer.metrics)}.json"
        )
        if cache.exists():
            search = search_result_from_json(json.loads(cache.read_text()))
        else:
            search = exhaustive_search(degraded, clean, degradations=record["degradations"], scorer=scorer)
            atomic_write_text(cache, json.dumps(search.to_json()))
        degraded_metrics = scorer(degraded, clean)
        for name, planner in planners.items():
            t0 = time.perf_counter()
            answer = planner.plan(
                PlanRequest(
                    image=degraded,
                    degradations=tuple(record["degradations"]),
                    search=search,
                    seed=sample["seed"],
                )
            )
            plan_seconds = time.perf_counter() - t0
            ev = evaluate_answer(answer, search, degraded, clean, scorer)
            rows.append(
                {
                    "sample": sample["index"],
                    "image": Path(sample["image"]).name,
                    "combo": " + ".join(record["degradations"]),
                    "n_degradations": len(record["degradations"]),
                    "planner": name,
                    "plan": answer.plan.text(),
                    "saw": list(answer.degradations),
                    "degradations_correct": set(answer.degradations) == set(record["degradations"]),
                    "plan_seconds": plan_seconds,
                    "n_candidates": len(search.candidates),
                    "tool_calls": search.tool_calls,
                    "naive_tool_calls": search.naive_tool_calls,
                    "search_seconds": search.seconds,
                    "degraded_metrics": degraded_metrics,
                    **ev,
                }
            )
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
        "| planner | n | ranking mean % (lower is better) | ranking median % | balanced | PSNR | SSIM | exact degradation set | plan ms (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p, a in s["planners"].items():
        lines.append(
            f"| {p} | {a['n']} | {a['ranking_mean']:.1f} | {a['ranking_median']:.1f} | {a['balanced_mean']:.2f} | "
            f"{a['psnr_mean']:.2f} | {a['ssim_mean']:.4f} | {100 * a['degradations_correct']:.0f}% | {a['plan_ms_median']:.1f} |"
        )
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
