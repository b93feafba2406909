"""The labeled dataset's row format: its features and how a row becomes a search result again.

Shared by the labeler (writes rows), the SFT builder and the dataset card (read them).
"""

from __future__ import annotations

import json

from ..search import search_result_from_json

# The five kinds of SFT pairs (restoreagent.labeling.sft) and what each teaches.
SCENARIOS = ("full_plan", "partial", "rollback", "after_rollback", "stop")
SCENARIO_HELP = {
    "full_plan": "the whole plan from the degraded image",
    "partial": "the rest of the plan after some steps (history: done / last)",
    "rollback": "say `rollback` when the last step made the image worse",
    "after_rollback": "re-plan after a rollback without the failed step",
    "stop": "say `saw: none | plan: none` when nothing is left to do",
}


def _list(feature):
    """A list feature (``datasets.List`` from datasets 4; a one-item python list before)."""
    import datasets

    return datasets.List(feature) if hasattr(datasets, "List") else [feature]


def label_features(metrics):
    from datasets import Features, Image, Value

    List = _list
    m = {k: Value("float64") for k in metrics}
    return Features(
        {
            "sample_id": Value("int64"),
            "degraded": Image(),
            "clean_root": Value("string"),
            "clean_path": Value("string"),
            "crop_box": List(Value("int32")),
            "degradations": List(Value("string")),
            "n_degradations": Value("int32"),
            "degradation_record": Value("string"),
            "tasks": List(Value("string")),
            "toolset": Value("string"),
            "metric_names": List(Value("string")),
            "candidates": List({"plan": Value("string"), "balanced": Value("float64"), "metrics": m}),
            "nodes": List({"steps": Value("string"), "metrics": m}),
            "zstats": {"mean": m, "std": m},
            "best_plan": Value("string"),
            "best_balanced": Value("float64"),
            "fixed_plan": Value("string"),
            "n_candidates": Value("int32"),
            "tool_calls": Value("int64"),
            "naive_tool_calls": Value("int64"),
            "search_seconds": Value("float64"),
            "seconds": Value("float64"),
        }
    )


def search_from_row(row: dict):
    """The :class:`~restoreagent.search.SearchResult` stored in a labeled record."""
    return search_result_from_json(
        {
            "tasks": row["tasks"],
            "toolset": json.loads(row["toolset"]),
            "metrics": row["metric_names"],
            "tool_calls": row["tool_calls"],
            "naive_tool_calls": row["naive_tool_calls"],
            "seconds": row["search_seconds"],
            "stats": row["zstats"],
            "candidates": row["candidates"],
            "nodes": row["nodes"],
        }
    )
