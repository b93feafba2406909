"""Which results the fusion blends, and running them.

A per-pixel convex blend can only beat the best of its candidates where their errors differ, so
the candidates of a plan are chosen to be *complementary by design* (:func:`candidate_plans`):

1. the plan itself;
2. strength brackets: one step's tool replaced by the next stronger and the next weaker tool of
   its task (``_low``/``_mild`` < ``_mid`` < ``_high``/``_strong``/``_severe``), so the blend can
   take the strong denoiser in flat regions and the light one in texture, or an exposure between
   two tone curves. The step whose task has the most tools is bracketed first (denoising, whose
   right strength varies most from photo to photo), then the others;
3. the plan in another order (its last two steps swapped): brightening before denoising, or
   denoising before deJPEG, makes a different kind of error;
4. then any other tool of a step's task (tools without a strength in their name), round-robin;
5. then two strength brackets of different steps at once (a stronger deJPEG *and* a weaker
   denoiser): where both steps' right strength differs from the plan's, no one-step variant is
   close, and on held-out noise + JPEG crops they raised what a blend could reach (docs/fusion.md).

(Brackets before the reordering: on held-out train crops the K = 4 blend gained more over the best
fixed candidate with the plan and three brackets than with the plan, the reordering and two
brackets; docs/fusion.md.) For ``denoise:unet_denoise_mid, brighten:gamma_mild`` and K = 5 they
are the plan, ``denoise`` -> ``unet_denoise_high``, ``denoise`` -> ``unet_denoise_low``,
``brighten`` -> ``gamma_mid``, then ``brighten:gamma_mild, denoise:unet_denoise_mid``.

:func:`run_plans` runs several plans on one image as a prefix tree: plans that share their first
steps share that work.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from ..executor import run_plans  # noqa: F401 - this package's public name for the shared runner
from ..plan import Plan, Step
from ..tools.registry import tools_for_task

CANDIDATES_VERSION = 4  # which candidate rule made a cached candidate set (data/fusion_candidates/*_v4;
# v4 added the two-step brackets after everything v3 listed, so sets of up to v3's length are the same)

_STRENGTH = {"low": 0, "mild": 0, "mid": 1, "high": 2, "strong": 2, "severe": 2}


def strength(tool: str) -> int | None:
    """The strength a tool's name says (``unet_denoise_low`` 0, ``gamma_mid`` 1, ``unet_dejpeg_severe`` 2), or None."""
    return _STRENGTH.get(tool.rsplit("_", 1)[-1])


def _with(plan: Plan, i: int, tool: str) -> Plan:
    steps = list(plan.steps)
    steps[i] = Step(plan.steps[i].task, tool)
    return Plan(tuple(steps))


def candidate_plans(plan: Plan, k: int) -> list[Plan]:
    """``plan`` first, then its strength brackets and its reordering (see the module); at most ``k`` plans."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    out = [plan]

    def add(p: Plan) -> None:
        if p not in out:
            out.append(p)

    tools = [tools_for_task(s.task) for s in plan]
    order = sorted(range(len(plan)), key=lambda i: -len(tools[i]))  # stable: plan order among equals
    brackets: list[tuple[int, str]] = []  # (step, tool)
    for i in order:
        own = strength(plan.steps[i].tool)
        ranked = sorted((strength(t), t) for t in tools[i] if t != plan.steps[i].tool and strength(t) is not None)
        if own is not None:
            stronger = [t for r, t in ranked if r > own]
            weaker = [t for r, t in reversed(ranked) if r < own]
            for t in (stronger[:1] + weaker[:1]):
                brackets.append((i, t))
                add(_with(plan, i, t))
    if len(plan) >= 2:
        steps = list(plan.steps)
        steps[-2], steps[-1] = steps[-1], steps[-2]
        add(Plan(tuple(steps)))
    rest = [[t for t in ts if t != s.tool] for s, ts in zip(plan.steps, tools, strict=True)]
    for depth in range(max((len(a) for a in rest), default=0)):
        for i, alts in enumerate(rest):
            if depth < len(alts):
                add(_with(plan, i, alts[depth]))
    for a, (i, ti) in enumerate(brackets):
        for j, tj in brackets[a + 1:]:
            if j != i:
                add(_with(_with(plan, i, ti), j, tj))
    return out[:k]


def all_plans(tasks: Sequence[str], limit: int | None = None, rng: np.random.Generator | None = None) -> list[Plan]:
    """Every tool choice for ``tasks`` (in the given order); a random ``limit`` of them when there are more."""
    choices = [[Step(t, name) for name in tools_for_task(t)] for t in tasks]
    plans = [Plan(tuple(c)) for c in itertools.product(*choices)]
    if limit is not None and len(plans) > limit:
        rng = rng or np.random.default_rng(0)
        plans = [plans[i] for i in sorted(rng.choice(len(plans), size=limit, replace=False))]
    return plans
