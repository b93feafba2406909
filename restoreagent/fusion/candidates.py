"""Which results the fusion blends, and running them.

The candidates of a plan are the plan itself and its neighbours: the same steps with one step's
tool swapped for another tool of that task (the search's candidates, ``tools_for_task``). They are
taken round-robin over the steps, so a small K still varies every step: for
``denoise:unet_denoise_mid, brighten:gamma_mild`` and K = 4 they are the plan, ``denoise`` ->
``unet_denoise_high``, ``brighten`` -> ``gamma_mid``, ``denoise`` -> ``unet_denoise_low``.
Training uses :func:`all_plans` (every tool choice for the steps, up to a cap) and draws subsets.

:func:`run_plans` runs several plans on one image as a prefix tree: plans that share their first
steps share that work.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from ..executor import run_step
from ..plan import Plan, Step
from ..tools.registry import tools_for_task


def candidate_plans(plan: Plan, k: int) -> list[Plan]:
    """``plan`` first, then single-step substitutions round-robin over the steps; at most ``k`` plans."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    out = [plan]
    alternatives = [[t for t in tools_for_task(s.task) if t != s.tool] for s in plan]
    for depth in range(max((len(a) for a in alternatives), default=0)):
        for i, alts in enumerate(alternatives):
            if depth < len(alts) and len(out) < k:
                steps = list(plan.steps)
                steps[i] = Step(plan.steps[i].task, alts[depth])
                out.append(Plan(tuple(steps)))
    return out[:k]


def all_plans(tasks: Sequence[str], limit: int | None = None, rng: np.random.Generator | None = None) -> list[Plan]:
    """Every tool choice for ``tasks`` (in the given order); a random ``limit`` of them when there are more."""
    choices = [[Step(t, name) for name in tools_for_task(t)] for t in tasks]
    plans = [Plan(tuple(c)) for c in itertools.product(*choices)]
    if limit is not None and len(plans) > limit:
        rng = rng or np.random.default_rng(0)
        plans = [plans[i] for i in sorted(rng.choice(len(plans), size=limit, replace=False))]
    return plans


def run_plans(
    image: np.ndarray, plans: Sequence[Plan], on_step: Callable[[Step], None] | None = None
) -> list[np.ndarray]:
    """The result of every plan on ``image`` (same order), each shared prefix run once."""
    cache: dict[tuple[Step, ...], np.ndarray] = {(): image}

    def result(prefix: tuple[Step, ...]) -> np.ndarray:
        if prefix not in cache:
            cache[prefix] = run_step(result(prefix[:-1]), prefix[-1])[0]
            if on_step:
                on_step(prefix[-1])
        return cache[prefix]

    return [result(tuple(p.steps)) for p in plans]
