"""The one place the conversation touches the agent: look, plan, offer alternatives, execute, score.

A thin adapter over the public API (:class:`restoreagent.api.Agent`: the planner, detector and
tools loaded once; its beam-searched ``plans``) and region-only restoration
(:func:`restoreagent.region.restore_region`), so the conversation and the page say nothing about
how either works.

Not thread-safe: the web server runs every job of every session through one worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..catalog.learned import severity_ranges
from ..plan import Plan, Step
from ..tasks import PHYSICAL_TASK_ORDER
from ..tools.fixed_recipe import fixed_recipe
from ..tools.registry import available_tools, spec

FEATHER = 16  # px over which a region fades into the untouched photo (restoreagent.region's margin: 32 px)
RANK_PREVIEW = 128  # px: the alternatives are scored on the photo shrunk to this (Engine.rank_plans)


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` with its longer side at most ``side`` px (area averaging; unchanged when smaller)."""
    import cv2

    h, w = image.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


@dataclass
class StepResult:
    """One executed step: what ran, how long, and the image after it."""

    task: str
    tool: str
    seconds: float
    image: np.ndarray

    def to_json(self) -> dict:
        return {"task": self.task, "tool": self.tool, "seconds": round(self.seconds, 4)}


class Engine:
    """An :class:`~restoreagent.api.Agent` (planner, detector and tools loaded on first use, kept)."""

    def __init__(self, planner: str = "vlm", device: str = "auto"):
        from ..api import Agent

        self.planner_name = planner
        self.agent = Agent(planner="default" if planner == "vlm" else planner, device=device)

    # -- looking and planning ------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> dict:
        """The detector's view: decided set, every probability, severities (0 mild .. 1 worst)."""
        d = self.agent.detect(image)
        return {**d.to_json(), "severity_all": {k: round(v, 3) for k, v in d.severity.items()}}

    def plan(self, image: np.ndarray) -> tuple[list[str], Plan]:
        """The planner's degradations and plan for an image."""
        answer = self.agent.plan(image)
        return list(answer.degradations), answer.plan

    def alternatives(self, image: np.ndarray, first: Plan, detection: dict | None, k: int = 8,
                     rank: bool = True) -> list[Plan]:
        """Up to ``k`` distinct plans, ``first`` (the planner's) first: the API's (the planner's beams
        and the ``fixed+detect`` recipe), then ``first`` with one step moved one severity variant.
        With ``rank``, the others follow best-looking first (:meth:`rank_plans`), so each "not
        satisfied" shows the best-scoring alternative not yet shown."""
        plans = [first] + [a.plan for a in self.agent.plans(image, k)]
        for i, step in enumerate(first):
            for tool in neighbours(step.task, step.tool):
                plans.append(Plan(first.steps[:i] + (Step(step.task, tool),) + first.steps[i + 1 :]))
        unique: list[Plan] = []
        for p in plans:
            if p not in unique:
                unique.append(p)
        unique = unique[:k]
        return [first, *self.rank_plans(image, unique[1:])] if rank and len(unique) > 2 else unique

    def rank_plans(self, image: np.ndarray, plans: list[Plan], preview: int = RANK_PREVIEW) -> list[Plan]:
        """``plans`` best-looking first, by the no-reference scores of their results on a preview.

        Each plan runs on the photo shrunk to at most ``preview`` px a side (shared first steps run
        once); the results are ranked on each of :meth:`assess`'s measures (noise, exposure error,
        PIQE; lower is better for each) and ordered by the sum of their ranks (a Borda count: no
        measure's scale dominates), ties kept in the given order."""
        if len(plans) < 2:
            return list(plans)
        small = _shrink(image, preview)
        cache: dict[tuple[Step, ...], np.ndarray] = {(): small}

        def result(prefix: tuple[Step, ...]) -> np.ndarray:
            if prefix not in cache:
                cache[prefix] = self.agent.tool(prefix[-1].tool)(result(prefix[:-1]))
            return cache[prefix]

        scores = [self.assess(result(tuple(p.steps)), piqe=min(small.shape[:2]) >= 64) for p in plans]
        names = [m for m in ("noise", "exposure", "piqe") if all(m in sc for sc in scores)]
        total = np.zeros(len(plans))
        for m in names:
            values = np.array([sc[m] for sc in scores], dtype=np.float64)
            total += np.argsort(np.argsort(values, kind="stable"), kind="stable")  # rank 0 = best
        order = np.argsort(total, kind="stable")
        return [plans[i] for i in order]

    # -- doing ---------------------------------------------------------------------------------
    def execute(
        self,
        image: np.ndarray,
        plan: Plan,
        on_step: Callable[[int, int, Step], None] | None = None,
    ) -> list[StepResult]:
        """Run the plan with the Agent's tools; one result per step (the last one's is the photo)."""
        results = []
        for i, step in enumerate(plan):
            if on_step:
                on_step(i, len(plan), step)
            t0 = time.perf_counter()
            image = self.agent.tool(step.tool)(image)
            results.append(StepResult(step.task, step.tool, time.perf_counter() - t0, image))
        return results

    def execute_region(
        self,
        image: np.ndarray,
        plan: Plan,
        mask: np.ndarray,
        on_step: Callable[[int, int, Step], None] | None = None,
    ) -> list[StepResult]:
        """The plan on the region ``mask`` (bool H x W) only: :func:`restoreagent.region.restore_region`
        (context margin, feathered edge, the input's pixels beyond the feather), one picture per step."""
        from ..region import restore_region

        if not mask.any():
            return [StepResult(s.task, s.tool, 0.0, image) for s in plan]
        crops: list[StepResult] = []

        def run_plan(crop):  # restore_region hands over the region's crop; each step's result is kept
            crops.extend(self.execute(crop, plan, on_step))
            return crops[-1].image if crops else crop

        final, _ = restore_region(image, run_plan, mask=mask, feather=FEATHER)
        results = []
        for k, r in enumerate(crops):  # each earlier step's crop blended the same way (no tool runs again)
            out = final if k == len(crops) - 1 else restore_region(image, lambda _c, r=r: r.image, mask=mask, feather=FEATHER)[0]
            results.append(StepResult(r.task, r.tool, r.seconds, out))
        return results

    def execute_fused(
        self,
        image: np.ndarray,
        plan: Plan,
        k: int,
        mask: np.ndarray | None = None,
        on_step: Callable[[int, int, Step], None] | None = None,
    ) -> list[StepResult]:
        """The plan's steps (whole photo or ``mask``), then one more picture: the plan and its K-1
        neighbours blended by the learned fusion network (:meth:`restoreagent.api.Agent.restore`
        with ``fuse=k``; the same region rules)."""
        steps = self.execute(image, plan, on_step) if mask is None else self.execute_region(image, plan, mask, on_step)
        t0 = time.perf_counter()
        region = {} if mask is None else {"mask": mask, "feather": FEATHER}
        result = self.agent.restore(image, plan=plan, fuse=k, **region)
        names = [c["plan"] if isinstance(c, dict) else str(c) for c in result.report.get("candidates", [])]
        return steps + [StepResult("fuse", f"blend of {len(names)}: " + " | ".join(names), time.perf_counter() - t0, result.image)]

    def assess(self, image: np.ndarray, piqe: bool = True) -> dict:
        """No-reference scores (lower is better for each): noise (grey levels), exposure error, PIQE."""
        from ..quality import exposure_error, noise_level
        from ..quality import piqe as piqe_score

        t0 = time.perf_counter()
        scores = {"noise": round(noise_level(image), 3), "exposure": round(exposure_error(image), 4)}
        if piqe and min(image.shape[:2]) >= 64:
            scores["piqe"] = round(piqe_score(image), 2)
        scores["ms"] = round(1000 * (time.perf_counter() - t0), 1)
        return scores


# -- tools: severity ladders and the tools a person can pick ---------------------------------------

def tool_choices(task: str) -> list[str]:
    """Every tool available here for a task (reserve tools included: a person may prefer one)."""
    return [s.name for s in available_tools(task)]


def ladder(task: str, tool: str) -> list[str]:
    """The tools of ``tool``'s family (learned or classical) for ``task``, mildest first.

    Tools have mild/mid/severe variants tuned to severity ranges (``severity_ranges.yaml`` and the
    learned tools' declarations); "stronger" moves up this list, "weaker" down.
    """
    ranges = severity_ranges().get(task, {}).get("tools", {})
    kind = spec(tool).kind
    here = set(tool_choices(task))
    family = [t for t in ranges if t in here and spec(t).kind == kind]
    if tool not in family:
        return [tool]
    return sorted(family, key=lambda t: (ranges[t][0], ranges[t][1]))


def neighbours(task: str, tool: str) -> list[str]:
    """The next stronger and next weaker variant of a tool (those that exist)."""
    rungs = ladder(task, tool)
    i = rungs.index(tool)
    return [rungs[j] for j in (i + 1, i - 1) if 0 <= j < len(rungs)]


def default_tool(task: str) -> str:
    """The tool a newly added step gets: the fixed recipe's choice for that task."""
    return dict(fixed_recipe({task}))[task]


def add_step(plan: Plan, task: str) -> Plan:
    """``plan`` with a step for ``task`` (the recipe's tool), placed before the first step the
    fixed recipe runs after it; the plan's other steps keep their order."""
    order = [t for t, _ in fixed_recipe(set(PHYSICAL_TASK_ORDER))]
    rank = order.index(task) if task in order else len(order)
    at = next((i for i, s in enumerate(plan) if s.task in order and order.index(s.task) > rank), len(plan))
    return Plan(plan.steps[:at] + (Step(task, default_tool(task)),) + plan.steps[at:])


# -- regions -------------------------------------------------------------------------------------

def box_mask(shape: tuple[int, int], box) -> np.ndarray:
    """A bool mask of the box ``(x, y, w, h)`` clipped to the image."""
    h, w = shape
    x, y, bw, bh = (int(round(float(v))) for v in box)
    mask = np.zeros((h, w), bool)
    mask[max(0, y) : max(0, min(h, y + bh)), max(0, x) : max(0, min(w, x + bw))] = True
    return mask


MAX_MASK_BYTES = 8 * 2**20


def mask_from_png(data: str, shape: tuple[int, int]) -> np.ndarray:
    """A brushed mask (a PNG, base64 or a data URL; painted pixels non-zero, or opaque) as bool (H, W)."""
    import base64
    import binascii
    import io

    from PIL import Image, UnidentifiedImageError

    from ..errors import RestoreAgentError

    data = data.split(",", 1)[1] if data.startswith("data:") else data
    if len(data) > MAX_MASK_BYTES:
        raise RestoreAgentError("the brushed mask is too large (over 8 MB)")
    try:
        with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as im:
            im.load()
            channel = im.getchannel("A") if "A" in im.getbands() else im.convert("L")
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError) as e:
        raise RestoreAgentError(f"the brushed mask is not a readable PNG ({e})") from None
    h, w = shape
    if channel.size != (w, h):
        channel = channel.resize((w, h), Image.NEAREST)
    return np.asarray(channel) > 127


def mask_to_png(mask: np.ndarray) -> str:
    """A bool mask as a base64 1-bit PNG (how a region is kept in the conversation's JSON)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).convert("1").save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def feather_weight(mask: np.ndarray, feather: int = FEATHER) -> np.ndarray:
    """1 on the region, falling linearly outside it, exactly 0 beyond ``feather`` px (restoreagent.region)."""
    from ..region import feather_weights

    return feather_weights(mask, feather)


def sky_mask(image: np.ndarray) -> np.ndarray:
    """A rough sky mask: smooth, bright-or-blue pixels connected to the top edge.

    A heuristic (no segmentation model ships with restoreagent): it finds open skies, and returns
    an empty mask for photos whose top is not sky, which the caller reports instead of guessing.
    """
    import cv2

    img = np.asarray(image, np.float32)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # H in degrees, S and V in [0, 1]
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    grad = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    grad = cv2.GaussianBlur(grad, (0, 0), 3)
    blue = (hsv[..., 0] > 180) & (hsv[..., 0] < 260) & (hsv[..., 1] > 0.12) & (hsv[..., 2] > 0.35)
    pale = (hsv[..., 1] < 0.15) & (hsv[..., 2] > 0.7)
    smooth = grad < 0.25
    candidate = ((blue | pale) & smooth).astype(np.uint8)
    n, labels = cv2.connectedComponents(candidate, connectivity=4)
    top = {int(v) for v in np.unique(labels[0]) if v != 0}
    mask = np.isin(labels, list(top)) if top else np.zeros(grey.shape, bool)
    if mask.mean() < 0.02:  # a few bright pixels at the top are not a sky
        return np.zeros(grey.shape, bool)
    return mask
