"""A cheaper search for training labels: a beam with rollouts over the prefix tree.

The benchmark stays exhaustive (:func:`restoreagent.search.exhaustive_search`: every order of the
needed tasks times every tool choice, 1,728 pipelines and ~2,500 tool calls for four
degradations). Training labels need the best pipeline and a spread of scored alternatives, not
all of them. The beam walks the same tree level by level and keeps, at each depth, the ``width``
partial pipelines that look best. A partial pipeline is judged by its *rollout*: the pipeline
completed by the fixed expert recipe (its order and tool for each remaining task), scored against
the clean photo. Judging the partial image itself is myopic (measured: brightening first always
looks best, yet the best pipelines mostly undo JPEG and noise first); the rollout judges where a
first step leads. Each rollout is a complete candidate, so it is kept and scored; the last level
adds every completion of the kept nodes. Images along the way are reused (a rollout's first step
is a child at the next depth).

Returned: a :class:`~restoreagent.search.SearchResult` over the *evaluated* pipelines only (their
balanced scores are z-scores among those candidates), with every evaluated internal node in
``nodes`` (each one's parent is there too, so the SFT builder's rollback logic applies).
Measured against the exhaustive search (finds the exhaustive best, the ranking of its pick
among all candidates, regret, speed): ``eval/label_beam.py``, docs/labeling.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..plan import Plan, Step
from ..scoring import Scorer, ZStats
from ..search import Candidate, Node, SearchResult, count_pipelines, default_toolset, ranked_result
from ..tasks import TASK_FOR_DEGRADATION, physical_task_order
from ..tools.fixed_recipe import fixed_recipe
from ..tools.registry import get_tool

DEFAULT_WIDTH = 2
DEFAULT_POLISH = 3  # at most this many hill-climbing moves after the beam


def completion(remaining, toolset: dict[str, list[str]]) -> list[Step]:
    """The rollout policy: the fixed expert recipe's order and tools for the remaining tasks
    (a recipe tool that is not a candidate here: the task's first candidate)."""
    recipe = dict(fixed_recipe(set(remaining), {t: toolset[t] for t in remaining}))
    order = [t for t, _ in fixed_recipe(set(remaining), {t: toolset[t] for t in remaining})]
    order += [t for t in remaining if t not in order]
    return [Step(t, recipe.get(t) if recipe.get(t) in toolset[t] else toolset[t][0]) for t in order]


def neighbours(steps: tuple[Step, ...], toolset: dict[str, list[str]]) -> list[tuple[Step, ...]]:
    """Pipelines one move away: one step's tool changed, or two adjacent steps swapped."""
    out = []
    for i, st in enumerate(steps):
        out += [steps[:i] + (Step(st.task, t),) + steps[i + 1 :] for t in toolset[st.task] if t != st.tool]
    for i in range(len(steps) - 1):
        out.append(steps[:i] + (steps[i + 1], steps[i]) + steps[i + 2 :])
    return out


def beam_search(
    degraded: np.ndarray,
    clean: np.ndarray,
    degradations=None,
    tasks=None,
    toolset: dict[str, list[str]] | None = None,
    scorer: Scorer | None = None,
    width: int = DEFAULT_WIDTH,
    polish: int = DEFAULT_POLISH,
    on_call: Callable[[], None] | None = None,
    tools: Callable[[str], object] = get_tool,
) -> SearchResult:
    """Beam search with rollouts over task orders and tools (module docstring); internal nodes are kept.

    ``tools`` maps a tool name to the callable tool (default: the registry); ``eval/label_replay.py``
    passes stand-ins that replay an exhaustive search's saved scores, so labeler variants can be judged
    without running a network."""
    if width < 1:
        raise ValueError("the beam width must be at least 1")
    if tasks is None:
        tasks = [TASK_FOR_DEGRADATION[d] for d in degradations]
    tasks = tuple(physical_task_order(tasks))
    toolset = default_toolset(tasks, toolset)
    scorer = scorer or Scorer()
    t0 = time.perf_counter()
    degraded = np.ascontiguousarray(degraded, dtype=np.float32)
    images: dict[tuple[Step, ...], np.ndarray] = {(): degraded}  # computed prefixes (rollouts' steps too)
    node_metrics: dict[tuple[Step, ...], dict] = {(): scorer(degraded, clean)}
    leaf_metrics: dict[tuple[Step, ...], dict] = {}
    calls = 0

    def run(steps: tuple[Step, ...]) -> np.ndarray:
        """The image after ``steps``, computing (and scoring) the missing suffix."""
        nonlocal calls
        k = len(steps)
        while steps[:k] not in images:
            k -= 1
        img = images[steps[:k]]
        for j in range(k, len(steps)):
            img = tools(steps[j].tool)(img)
            calls += 1
            if on_call:
                on_call()
            key = steps[: j + 1]
            images[key] = img
            if j + 1 < len(tasks):
                node_metrics[key] = scorer(img, clean)
            else:
                leaf_metrics[key] = scorer(img, clean)
        return img

    level: list[tuple[tuple, tuple[Step, ...], np.ndarray, tuple[str, ...]]] = [((), (), degraded, tasks)]
    while level:
        # the children not computed yet (rollouts computed some) go through each tool as one batch
        children, groups = [], {}
        for key, steps, image, remaining in level:
            for task in remaining:
                rest = tuple(t for t in remaining if t != task)
                ti = tasks.index(task)
                for tj, tool in enumerate(toolset[task]):
                    child = (key + ((ti, tj),), steps + (Step(task, tool),), image, rest)
                    if child[1] in images:
                        if rest:
                            children.append(child)
                    else:
                        groups.setdefault(tool, []).append(child)
        for tool, items in groups.items():
            for (ckey, csteps, _, rest), out in zip(items, tools(tool).batch([it[2] for it in items])):
                calls += 1
                if on_call:
                    on_call()
                images[csteps] = out
                if rest:
                    node_metrics[csteps] = scorer(out, clean)
                    children.append((ckey, csteps, out, rest))
                else:
                    leaf_metrics[csteps] = scorer(out, clean)
        if not children:
            break
        children.sort(key=lambda c: c[0])
        children = [(k, st, images[st], r) for k, st, _, r in children]
        rollouts = [c[1] + tuple(completion(c[3], toolset)) for c in children]
        for r in rollouts:
            run(r)
        frame = ZStats.of([leaf_metrics[r] for r in rollouts], scorer.metrics)
        order = sorted(range(len(children)), key=lambda i: -frame.balanced(leaf_metrics[rollouts[i]]))
        keep = sorted(order[:width])
        level = [children[i] for i in keep]
    # polish: hill-climb from the best evaluated pipeline over its neighbours (one step's tool changed,
    # or two adjacent steps swapped), in the frame of every evaluated candidate, while it improves
    for _ in range(polish):
        frame = ZStats.of(list(leaf_metrics.values()), scorer.metrics)
        best = max(leaf_metrics, key=lambda k: frame.balanced(leaf_metrics[k]))
        fresh = [n for n in neighbours(best, toolset) if n not in leaf_metrics]
        if not fresh:
            break
        for n in fresh:
            run(n)
        frame = ZStats.of(list(leaf_metrics.values()), scorer.metrics)
        if max(leaf_metrics, key=lambda k: frame.balanced(leaf_metrics[k])) == best:
            break
    cands = [Candidate(Plan(s), m) for s, m in sorted(leaf_metrics.items(), key=lambda kv: _order_key(kv[0], tasks, toolset))]
    nodes = [Node(s, m) for s, m in sorted(node_metrics.items(), key=lambda kv: _order_key(kv[0], tasks, toolset))]
    return ranked_result(tasks, toolset, scorer, cands, nodes, calls, count_pipelines(toolset) * len(tasks), t0)


def _order_key(steps, tasks, toolset):
    """The depth-first enumeration order of the exhaustive search (a prefix before its extensions)."""
    return tuple((tasks.index(s.task), toolset[s.task].index(s.tool)) for s in steps)
