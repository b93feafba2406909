"""Dataset cards: README.md (Hugging Face card with YAML header) + card.png next to a dataset.

For a labeled dataset: samples per degradation combination, how often each task order and each
tool is the best, how often the fixed expert recipe is already optimal, tool calls with and
without the prefix tree. For an SFT dataset: the scenario mix and examples.
"""

from __future__ import annotations

import io
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from ..plan import parse_plan
from ..scoring import ranking_percent
from ..splits import DEV_SPLITS
from .records import SCENARIO_HELP
from .shards import data_files, read_manifest, write_card_files

# Every card says where validation comes from (restoreagent.splits).
VALIDATION_NOTE = ("Validation data are crops of train photos, never of a benchmark split "
                   f"({', '.join(DEV_SPLITS)}: the labeler refuses those folders).")

_STAT_COLUMNS = [
    "sample_id", "degradations", "n_degradations", "tasks", "best_plan", "fixed_plan", "candidates",
    "tool_calls", "naive_tool_calls", "n_candidates", "search_seconds", "seconds",
]


def labeled_stats(path) -> dict:
    """Aggregate statistics of a labeled dataset (streams shard by shard)."""
    import pyarrow.parquet as pq

    combos = defaultdict(lambda: {"n": 0, "cands": 0, "calls": 0, "naive": 0})
    by_n = defaultdict(lambda: {"n": 0, "cands": [], "calls": [], "naive": [], "search_s": [], "sample_s": [], "fixed_best": 0, "fixed_rank": []})
    orders = defaultdict(Counter)  # task set -> Counter(best order)
    tools = defaultdict(Counter)  # task -> Counter(best tool)
    task_n = Counter()
    fixed_best = 0
    fixed_rank = []
    n = 0
    for f in data_files(path):
        for r in pq.read_table(f, columns=_STAT_COLUMNS).to_pylist():
            n += 1
            k = r["n_degradations"]
            combo = " + ".join(r["degradations"])
            c = combos[combo]
            c["n"] += 1
            c["cands"] += r["n_candidates"]
            c["calls"] += r["tool_calls"]
            c["naive"] += r["naive_tool_calls"]
            b = by_n[k]
            b["n"] += 1
            b["cands"].append(r["n_candidates"])
            b["calls"].append(r["tool_calls"])
            b["naive"].append(r["naive_tool_calls"])
            b["search_s"].append(r["search_seconds"])
            b["sample_s"].append(r["seconds"])
            best = parse_plan(r["best_plan"], check_tools=False)
            orders[" + ".join(sorted(r["tasks"]))][" > ".join(best.tasks)] += 1
            for s in best:
                tools[s.task][s.tool] += 1
                task_n[s.task] += 1
            scores = [x["balanced"] for x in r["candidates"]]
            fixed = next((x["balanced"] for x in r["candidates"] if x["plan"] == r["fixed_plan"]), None)
            is_best = r["fixed_plan"] == r["best_plan"]
            fixed_best += is_best
            b["fixed_best"] += is_best
            if fixed is not None:
                rk = ranking_percent(fixed, scores)
                fixed_rank.append(rk)
                b["fixed_rank"].append(rk)

    def mean(x):
        return statistics.fmean(x) if x else 0.0

    return {
        "samples": n,
        "combinations": {k: {"samples": v["n"], "candidates_mean": v["cands"] / v["n"], "tool_calls_mean": v["calls"] / v["n"], "naive_tool_calls_mean": v["naive"] / v["n"]} for k, v in sorted(combos.items(), key=lambda kv: (-kv[1]["n"], kv[0]))},
        "by_n": {
            k: {
                "samples": v["n"],
                "candidates_mean": mean(v["cands"]),
                "tool_calls_mean": mean(v["calls"]),
                "naive_tool_calls_mean": mean(v["naive"]),
                "search_seconds_median": statistics.median(v["search_s"]),
                "sample_seconds_mean": mean(v["sample_s"]),
                "fixed_optimal": v["fixed_best"] / v["n"],
                "fixed_ranking_mean": mean(v["fixed_rank"]),
            }
            for k, v in sorted(by_n.items())
        },
        "best_orders": {k: dict(v.most_common()) for k, v in sorted(orders.items())},
        "best_tools": {t: {"samples": task_n[t], **dict(tools[t].most_common())} for t in sorted(tools)},
        "fixed_optimal": fixed_best / n if n else 0.0,
        "fixed_ranking_mean": mean(fixed_rank),
        "tool_calls_mean": mean([x for v in by_n.values() for x in v["calls"]]),
        "naive_tool_calls_mean": mean([x for v in by_n.values() for x in v["naive"]]),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _labeled_png(st: dict) -> bytes | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency; be robust anyway
        return None
    fig, ax = plt.subplots(2, 2, figsize=(12, 8.5))
    combos = list(st["combinations"].items())[:15]
    a = ax[0, 0]
    a.barh([k for k, _ in combos][::-1], [v["samples"] for _, v in combos][::-1], color="#4c72b0")
    a.set_title("samples per degradation combination (top 15)")
    a.tick_params(axis="y", labelsize=7)
    a = ax[0, 1]
    tasks = list(st["best_tools"])
    bottom = [0.0] * len(tasks)
    palette = plt.get_cmap("tab10")
    rank_colors: dict[int, object] = {}
    for t_i, t in enumerate(tasks):
        d = {k: v for k, v in st["best_tools"][t].items() if k != "samples"}
        total = st["best_tools"][t]["samples"]
        for j, (tool, cnt) in enumerate(sorted(d.items(), key=lambda kv: -kv[1])):
            share = cnt / total
            rank_colors.setdefault(j, palette(j % 10))
            a.bar(t_i, share, bottom=bottom[t_i], color=rank_colors[j], edgecolor="white")
            if share > 0.08:
                a.text(t_i, bottom[t_i] + share / 2, tool, ha="center", va="center", fontsize=6)
            bottom[t_i] += share
    a.set_xticks(range(len(tasks)), tasks, rotation=30, fontsize=8)
    a.set_title("which tool is best, per task (share of samples)")
    a = ax[1, 0]
    ns = list(st["by_n"])
    x = range(len(ns))
    a.bar([i - 0.2 for i in x], [st["by_n"][k]["naive_tool_calls_mean"] for k in ns], 0.4, label="every pipeline from scratch")
    a.bar([i + 0.2 for i in x], [st["by_n"][k]["tool_calls_mean"] for k in ns], 0.4, label="prefix tree")
    a.set_yscale("log")
    a.set_xticks(list(x), [f"{k} degr." for k in ns])
    a.set_title("tool calls per sample (mean)")
    a.legend(fontsize=8)
    a = ax[1, 1]
    a.bar(list(x), [100 * st["by_n"][k]["fixed_optimal"] for k in ns], color="#55a868", label="fixed recipe is the best pipeline (%)")
    a.plot(list(x), [st["by_n"][k]["fixed_ranking_mean"] for k in ns], "o-", color="#c44e52", label="fixed recipe's mean ranking (%)")
    a.set_xticks(list(x), [f"{k} degr." for k in ns])
    a.set_ylim(0, 100)
    a.set_title("the fixed expert recipe")
    a.legend(fontsize=8)
    fig.suptitle(f"restoreagent labeled dataset: {st['samples']} samples")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _yaml_header(pretty: str, data_line: list[str]) -> list[str]:
    return ["---", f"pretty_name: {pretty}", "tags:", "- image-restoration", "- restoreagent", "configs:", "- config_name: default", *data_line, "---", ""]


def labeled_card(path) -> tuple[str, bytes | None]:
    man = read_manifest(path) or {}
    st = labeled_stats(path)
    cfg = man.get("config", {})
    lc = man.get("label_config", {})
    lines = _yaml_header("restoreagent labeled pipelines", ["  data_files:", "  - split: train", "    path: data/*.parquet"])
    lines += [
        "# restoreagent labeled pipelines",
        "",
        "Every sample is a crop of a clean photo, degraded by a recorded chain of 1-4 synthetic degradations; "
        "every candidate restoration pipeline (each order of the matching tasks x each tool per task) was run as a "
        "prefix tree and scored against the clean crop with RestoreAgent's balanced score (sum of per-image "
        "z-scores of the metrics). The best pipeline is the label.",
        "",
        "![summary](card.png)",
        "",
        "## How it was made",
        "",
        f"- samples: {st['samples']}; seed: {cfg.get('seed')}; crop: {cfg.get('crop')} px ({cfg.get('crop_mode')}); "
        f"degradations per sample: {cfg.get('min_degradations')}-{cfg.get('max_degradations')}"
        + (" (from a combinations file)" if cfg.get("combos") else ""),
        f"- clean images: {cfg.get('images', {}).get('files')} files in {', '.join(cfg.get('images', {}).get('folders', []))} (referenced, not copied)",
        f"- validation: none here; `restoreagent dataset build-sft` holds out labeled samples by sample id. {VALIDATION_NOTE}",
        f"- metrics in the balanced score: {', '.join(cfg.get('metrics', []))}",
        (
            f"- combinations: {'; '.join(' + '.join(c) for c in cfg['combos'])}"
            if cfg.get("combos")
            else f"- degradations drawn from: {', '.join(cfg.get('degradations', []))}"
        ),
        f"- command: `{label_command(lc)}` (add --workers K or --backend ray to go faster; the result is the same)",
        "",
        "Toolset (candidate tools per task):",
        "",
        "| task | tools |",
        "|---|---|",
    ]
    lines += [f"| {t} | {', '.join(v)} |" for t, v in cfg.get("toolset", {}).items()]
    lines += ["", "## Samples and search cost by number of degradations", "",
              "| degradations | samples | candidates | tool calls, prefix tree | tool calls, naive | saved | search s (median) | fixed recipe optimal | fixed recipe ranking |",
              "|---|---|---|---|---|---|---|---|---|"]
    for k, v in st["by_n"].items():
        saved = 1 - v["tool_calls_mean"] / v["naive_tool_calls_mean"] if v["naive_tool_calls_mean"] else 0
        lines.append(
            f"| {k} | {v['samples']} | {v['candidates_mean']:.0f} | {v['tool_calls_mean']:.1f} | {v['naive_tool_calls_mean']:.1f} | {_pct(saved)} | "
            f"{v['search_seconds_median']:.2f} | {_pct(v['fixed_optimal'])} | {v['fixed_ranking_mean']:.1f}% |"
        )
    lines += ["", f"Overall: {st['tool_calls_mean']:.1f} tool calls per sample with the prefix tree vs {st['naive_tool_calls_mean']:.1f} running every pipeline from scratch. "
              f"The fixed expert recipe (`planners.baselines.fixed_recipe`) is already the best pipeline for {_pct(st['fixed_optimal'])} of the samples "
              f"(mean ranking {st['fixed_ranking_mean']:.1f}%, lower is better).", ""]
    lines += ["## Samples per degradation combination", "", "| combination | samples | candidates | tool calls (tree / naive) |", "|---|---|---|---|"]
    for k, v in st["combinations"].items():
        lines.append(f"| {k} | {v['samples']} | {v['candidates_mean']:.0f} | {v['tool_calls_mean']:.0f} / {v['naive_tool_calls_mean']:.0f} |")
    lines += ["", "## Which task order is best", "", "Per set of tasks, how often each order is the best pipeline's order.", "",
              "| tasks | best order | samples | share |", "|---|---|---|---|"]
    for tasks, counter in st["best_orders"].items():
        total = sum(counter.values())
        if " + " not in tasks:
            continue
        for order, cnt in counter.items():
            lines.append(f"| {tasks} | {order} | {cnt} | {_pct(cnt / total)} |")
    lines += ["", "## Which tool is best", "", "Per task, how often each tool is the one in the best pipeline (share of the samples with that task).", "",
              "| task | tool | best in | share |", "|---|---|---|---|"]
    for t, d in st["best_tools"].items():
        total = d["samples"]
        for tool, cnt in d.items():
            if tool != "samples":
                lines.append(f"| {t} | {tool} | {cnt} | {_pct(cnt / total)} |")
    lines += ["", "## Columns", "", *[f"- `{k}`: {v}" for k, v in LABELED_COLUMNS.items()], "",
              "## Loading", "", "```python", "from restoreagent.labeling import load_labeled", f"ds = load_labeled({str(path)!r})   # or datasets.load_dataset(path, split='train')", "```", "",
              "Samples are reproducible: sample i depends only on (seed, i) and the configuration in `manifest.json`; "
              "`restoreagent.degradations.replay(clean_crop, json.loads(degradation_record))` rebuilds the degraded image "
              "(before its 8-bit quantisation).", ""]
    return "\n".join(lines), _labeled_png(st)


LABELED_COLUMNS = {
    "sample_id": "index of the sample in the run (0..N-1); everything about it derives from (seed, sample_id)",
    "degraded": "the degraded crop (PNG, 8-bit): exactly the image every candidate was run on",
    "clean_root": "name of the clean image's folder (its path is in manifest.json `images_roots`)",
    "clean_path": "the clean image file, relative to its folder (not copied)",
    "crop_box": "[top, left, height, width] of the crop in the clean image",
    "degradations": "the degradations applied, in the order applied",
    "n_degradations": "their number",
    "degradation_record": "JSON: seed, chain with every parameter, shape (restoreagent.degradations.replay)",
    "tasks": "the tasks searched (one per degradation)",
    "toolset": "JSON: task -> candidate tools for this sample",
    "metric_names": "the metrics in the balanced score",
    "candidates": "every pipeline: plan text, balanced score, metrics; best first",
    "nodes": "internal prefix-tree nodes (root = the degraded image): steps text and metrics",
    "zstats": "per-metric mean and std over the candidates (the frame of the balanced score)",
    "best_plan": "the label: the best pipeline",
    "best_balanced": "its balanced score",
    "fixed_plan": "what the fixed expert recipe would run",
    "n_candidates": "number of candidate pipelines",
    "tool_calls": "tool calls made (prefix tree)",
    "naive_tool_calls": "tool calls had every pipeline run from scratch",
    "search_seconds": "time of the search (varies between runs)",
    "seconds": "time of the whole sample (varies between runs)",
}


def _shown_path(path) -> str:
    """A path as a user would type it: relative to the working folder when it is near it."""
    import os

    p = os.path.normpath(str(path))
    if os.path.isabs(p):
        rel = os.path.relpath(p)
        if not rel.startswith(os.path.join("..", "..", "..")):
            return rel
    return p


def label_command(lc: dict) -> str:
    """The `restoreagent label` command line that makes (and resumes) the dataset of config ``lc``."""
    images = [_shown_path(p) for p in lc.get("images", [])]
    parts = ["restoreagent label --images", *images, f"--out {_shown_path(lc.get('out'))}",
             f"--samples {lc.get('samples')} --seed {lc.get('seed')} --crop {lc.get('crop') or 0}"]
    if lc.get("crop_mode", "random") != "random":
        parts.append(f"--crop-mode {lc['crop_mode']}")
    if lc.get("combos_file"):
        parts.append(f"--combos {_shown_path(lc['combos_file'])}")
    else:
        parts.append(f"--min-degradations {lc.get('min_degradations', 1)} --max-degradations {lc.get('max_degradations', 4)}")
        if lc.get("degradations"):
            parts.append(f"--degradations {','.join(lc['degradations'])}")
    if lc.get("toolset") is not None:
        parts.append("--toolset FILE")  # given as a mapping: see manifest.json's config.toolset
    if lc.get("metrics"):
        parts.append(f"--metrics {','.join(lc['metrics'])}")
    return " ".join(parts)


def write_labeled_card(path) -> None:
    readme, png = labeled_card(path)
    write_card_files(Path(path), readme, png)


# ---- SFT --------------------------------------------------------------------------------------


def sft_card(path, stats: dict, config: dict, examples: list[dict], png: bytes | None) -> str:
    lines = _yaml_header("restoreagent planner SFT", ["  data_files:", "  - split: train", "    path: train/*.arrow", "  - split: validation", "    path: validation/*.arrow"])
    total = sum(stats["scenarios"].values()) or 1
    lines += [
        "# restoreagent planner SFT data",
        "",
        "Image + prompt -> answer pairs for the planner, in RestoreAgent's five training scenarios, made from a "
        f"labeled dataset (`{config.get('labeled')}`). Prompts and answers are written by `restoreagent.dialogue`; "
        "the histories are exactly those the stepwise agent loop (`restoreagent.agent`) asks with. "
        "Load with `datasets.load_from_disk(path)` (a DatasetDict: train, validation by labeled sample).",
        "",
        *(["![examples](card.png)", ""] if png else []),
        "| scenario | examples | share | what it teaches |",
        "|---|---|---|---|",
    ]
    for s, help_ in SCENARIO_HELP.items():
        c = stats["scenarios"].get(s, 0)
        lines.append(f"| {s} | {c} | {_pct(c / total)} | {help_} |")
    lines += ["", f"Splits: {json.dumps(stats['splits'])}. Built with seed {config.get('seed')}; configuration in `restoreagent_sft.json`.",
              "", f"Validation: {config.get('val_fraction', 0):.0%} of the labeled samples (all their pairs), drawn by sample id "
              f"with the seed. {VALIDATION_NOTE}", "", "## Examples", ""]
    for ex in examples:
        lines += [f"- **{ex['scenario']}** (sample {ex['sample_id']}): `{ex['prompt']}` -> `{ex['target']}`"]
    return "\n".join(lines) + "\n"
