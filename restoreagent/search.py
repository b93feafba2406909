"""Exhaustive search over restoration pipelines, executed as a prefix tree.

For a degraded image with n degradations, the candidates are every order of the n matching
tasks times every tool choice per task (n! * prod(|tools(t)|) pipelines). Pipelines that share
their first k steps share the work: a depth-first walk applies each step once per distinct
prefix, so the image after "denoise:a, dejpeg:b" is computed once for every pipeline that starts
that way. Scores are identical to running each pipeline from scratch (tested).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .plan import Plan, Step, parse_plan
from .scoring import Scorer, ZStats, ranking_percent
from .tasks import TASK_FOR_DEGRADATION, physical_task_order
from .tools.registry import get_tool, tools_for_task


@dataclass
class Candidate:
    plan: Plan
    metrics: dict[str, float]
    balanced: float = 0.0

    def to_json(self) -> dict:
        return {"plan": self.plan.text(), "metrics": self.metrics, "balanced": self.balanced}


@dataclass
class Node:
    """An internal node of the tree: the image after ``steps`` (root: no steps), with its metrics."""

    steps: tuple[Step, ...]
    metrics: dict[str, float]

    def to_json(self) -> dict:
        return {"steps": Plan(self.steps).text(), "metrics": self.metrics}


@dataclass
class SearchResult:
    tasks: tuple[str, ...]
    toolset: dict[str, list[str]]
    metric_names: tuple[str, ...]
    candidates: list[Candidate]  # best first
    stats: ZStats
    tool_calls: int
    naive_tool_calls: int
    seconds: float
    nodes: list[Node] = field(default_factory=list)

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    def find(self, plan: Plan) -> Candidate | None:
        key = plan.text()
        for c in self.candidates:
            if c.plan.text() == key:
                return c
        return None

    def balanced_of(self, metrics: dict[str, float]) -> float:
        """Balanced score of any pipeline's metrics in this image's frame (candidate mean/std)."""
        return self.stats.balanced(metrics)

    def ranking_of_score(self, balanced: float) -> float:
        return ranking_percent(balanced, [c.balanced for c in self.candidates])

    def to_json(self) -> dict:
        return {
            "tasks": list(self.tasks),
            "toolset": self.toolset,
            "metrics": list(self.metric_names),
            "tool_calls": self.tool_calls,
            "naive_tool_calls": self.naive_tool_calls,
            "seconds": self.seconds,
            "stats": {"mean": self.stats.mean, "std": self.stats.std},
            "candidates": [c.to_json() for c in self.candidates],
            "nodes": [n.to_json() for n in self.nodes],
        }


def count_pipelines(toolset: dict[str, list[str]]) -> int:
    return math.factorial(len(toolset)) * math.prod(len(v) for v in toolset.values())


def count_tree_calls(toolset: dict[str, list[str]]) -> int:
    """Tool calls of the prefix tree: one per node below the root."""
    sizes = [len(v) for v in toolset.values()]
    total = 0
    for depth in range(1, len(sizes) + 1):
        # choose which tasks (ordered) fill the first `depth` levels, times their tool choices
        for combo in itertools.permutations(range(len(sizes)), depth):
            total += math.prod(sizes[i] for i in combo)
    return total


def default_toolset(tasks, toolset: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Candidate tools per task: the given ones, else every available tool of the task."""
    out = {}
    for t in tasks:
        tools = list(toolset[t]) if toolset and t in toolset else tools_for_task(t)
        if not tools:
            raise ValueError(f"no tool is available for task {t!r}")
        out[t] = tools
    return out


# A node of the tree during a walk: (key, steps, image, remaining tasks). ``key`` holds, per step,
# (index of the task in the searched tasks, index of the tool in its task's list): sorting by it
# gives the depth-first enumeration order (a prefix before its extensions), whatever order the
# nodes were computed in, so ties and stored lists do not depend on the walk.
_Open = tuple[tuple[tuple[int, int], ...], tuple[Step, ...], np.ndarray, tuple[str, ...]]

# Level-order walks keep two levels of images; above this they walk depth-first (one path at a time).
LEVEL_MEMORY_BYTES = int(2**31)


def expand(level: list[_Open], tasks: tuple[str, ...], toolset: dict[str, list[str]], on_call=None):
    """Apply every next step to every node of ``level``; yields ``(key, steps, image, remaining)`` children.

    Children that apply the same tool are computed together (:meth:`~restoreagent.tools.registry.Tool.batch`:
    one network pass per batch on a GPU), in groups, so only one group's outputs wait for the caller.
    """
    groups: dict[tuple[str, str], list] = {}
    for key, steps, image, remaining in level:
        for task in remaining:
            rest = tuple(t for t in remaining if t != task)
            ti = tasks.index(task)
            for tj, tool in enumerate(toolset[task]):
                groups.setdefault((task, tool), []).append((key + ((ti, tj),), steps + (Step(task, tool),), image, rest))
    for (_, tool), items in groups.items():
        outs = get_tool(tool).batch([it[2] for it in items])
        for (key, steps, _, rest), out in zip(items, outs):
            if on_call:
                on_call()
            yield key, steps, out, rest


def _walk_by_level(degraded, clean, tasks, toolset, scorer, record_nodes, on_call):
    level: list[_Open] = [((), (), degraded, tasks)]
    leaves, nodes, calls = [], [], 0
    while level:
        if record_nodes:
            nodes += [(key, Node(steps, scorer(img, clean))) for key, steps, img, _ in level]
        nxt = []
        for key, steps, out, rest in expand(level, tasks, toolset, on_call):
            calls += 1
            if rest:
                nxt.append((key, steps, out, rest))
            else:
                leaves.append((key, Candidate(Plan(steps), scorer(out, clean))))
        level = nxt
    leaves.sort(key=lambda x: x[0])
    nodes.sort(key=lambda x: x[0])
    return [c for _, c in leaves], [n for _, n in nodes], calls


def _walk_depth_first(degraded, clean, tasks, toolset, scorer, record_nodes, on_call):
    leaves, nodes = [], []
    calls = 0
    tools = {t: [get_tool(name) for name in toolset[t]] for t in tasks}  # built once, not per call

    def walk(image: np.ndarray, steps: tuple[Step, ...], remaining: tuple[str, ...]) -> None:
        nonlocal calls
        if not remaining:
            leaves.append(Candidate(Plan(steps), scorer(image, clean)))
            return
        if record_nodes:
            nodes.append(Node(steps, scorer(image, clean)))
        for task in remaining:
            rest = tuple(t for t in remaining if t != task)
            for tool in tools[task]:
                out = tool(image)
                calls += 1
                if on_call:
                    on_call()
                walk(out, steps + (Step(task, tool.name),), rest)

    walk(degraded, (), tasks)
    return leaves, nodes, calls


def exhaustive_search(
    degraded: np.ndarray,
    clean: np.ndarray,
    degradations=None,
    tasks=None,
    toolset: dict[str, list[str]] | None = None,
    scorer: Scorer | None = None,
    record_nodes: bool = False,
    on_call: Callable[[], None] | None = None,
    batched: bool | None = None,
) -> SearchResult:
    """Run every candidate pipeline (as a prefix tree) and score it against ``clean``.

    Give either ``degradations`` (names; their tasks are searched) or ``tasks``.
    ``record_nodes`` also scores every internal node (the labeler needs them for its
    step-by-step training scenarios). ``on_call`` is invoked after each tool call (progress).
    ``batched``: walk the tree level by level, every node that applies the same tool at the
    same depth in one :meth:`Tool.batch` call (default: when a tool batches, i.e. on a GPU, and
    two levels of images fit in ``LEVEL_MEMORY_BYTES``); else depth-first. Both give the same
    candidates in the same order.
    """
    if tasks is None:
        tasks = [TASK_FOR_DEGRADATION[d] for d in degradations]
    tasks = tuple(physical_task_order(tasks))
    toolset = default_toolset(tasks, toolset)
    scorer = scorer or Scorer()
    t0 = time.perf_counter()
    degraded = np.ascontiguousarray(degraded, dtype=np.float32)
    if batched is None:
        batches = any(get_tool(t).max_batch > 1 for v in toolset.values() for t in v)
        batched = batches and count_tree_calls(toolset) * degraded.nbytes <= LEVEL_MEMORY_BYTES
    walk = _walk_by_level if batched else _walk_depth_first
    leaves, nodes, calls = walk(degraded, clean, tasks, toolset, scorer, record_nodes, on_call)
    return ranked_result(tasks, toolset, scorer, leaves, nodes, calls, len(leaves) * len(tasks), t0)


def ranked_result(tasks, toolset, scorer: Scorer, candidates, nodes, calls: int, naive_calls: int, t0: float) -> SearchResult:
    """The search's answer from its scored candidates (in enumeration order): balanced scores in the
    frame of these candidates, best first."""
    stats = ZStats.of([c.metrics for c in candidates], scorer.metrics)
    for c in candidates:
        c.balanced = stats.balanced(c.metrics)
    # stable sort: ties keep enumeration order, so results are deterministic
    candidates.sort(key=lambda c: -c.balanced)
    return SearchResult(
        tasks=tasks,
        toolset=toolset,
        metric_names=scorer.metrics,
        candidates=candidates,
        stats=stats,
        tool_calls=calls,
        naive_tool_calls=naive_calls,
        seconds=time.perf_counter() - t0,
        nodes=nodes,
    )


def naive_search(degraded, clean, tasks, toolset, scorer: Scorer) -> dict[str, dict[str, float]]:
    """Reference implementation: every pipeline from scratch. Used by tests to check the tree."""
    tasks = tuple(physical_task_order(tasks))
    out = {}
    for order in itertools.permutations(tasks):
        for tools in itertools.product(*(toolset[t] for t in order)):
            img = degraded
            for tool in tools:
                img = get_tool(tool)(img)
            out[Plan.of(zip(order, tools)).text()] = scorer(img, clean)
    return out


def search_result_from_json(d: dict) -> SearchResult:
    """Inverse of SearchResult.to_json (the benchmark and labeler cache searches on disk)."""
    cands = [Candidate(parse_plan(c["plan"], check_tools=False), c["metrics"], c["balanced"]) for c in d["candidates"]]
    nodes = [Node(parse_plan(n["steps"], check_tools=False).steps, n["metrics"]) for n in d.get("nodes", [])]
    return SearchResult(
        tasks=tuple(d["tasks"]),
        toolset={k: list(v) for k, v in d["toolset"].items()},
        metric_names=tuple(d["metrics"]),
        candidates=cands,
        stats=ZStats(d["stats"]["mean"], d["stats"]["std"]),
        tool_calls=d["tool_calls"],
        naive_tool_calls=d["naive_tool_calls"],
        seconds=d["seconds"],
        nodes=nodes,
    )
