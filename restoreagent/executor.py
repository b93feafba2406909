"""Runs a plan on an image, step by step, timing each step."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .imageio import save_image
from .plan import Plan, Step
from .tools.registry import get_tool


@dataclass
class StepReport:
    index: int
    step: Step
    seconds: float
    saved_to: str | None = None
    metrics: dict[str, float] | None = None  # filled when a reference image is known
    kept: bool = True  # False when the agent rolled the step back

    def to_json(self) -> dict:
        d = {"index": self.index, "task": self.step.task, "tool": self.step.tool, "seconds": round(self.seconds, 4), "kept": self.kept}
        if self.saved_to:
            d["saved_to"] = self.saved_to
        if self.metrics is not None:
            d["metrics"] = self.metrics
        return d


@dataclass
class ExecutionReport:
    plan: Plan
    steps: list[StepReport] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"plan": self.plan.to_json(), "steps": [s.to_json() for s in self.steps], "seconds": round(self.seconds, 4)}


def run_step(image: np.ndarray, step: Step) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = get_tool(step.tool)(image)
    return out, time.perf_counter() - t0


def execute(
    plan: Plan,
    image: np.ndarray,
    save_steps: str | Path | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    step_runner: Callable[[np.ndarray, Step], tuple[np.ndarray, float]] | None = None,
) -> tuple[np.ndarray, ExecutionReport]:
    """Apply the plan's tools in order. ``save_steps`` keeps every intermediate image as PNG.

    ``step_runner`` (default :func:`run_step`) runs one step; the Agent passes its own, whose
    tools it built with its device and tiling."""
    step_runner = step_runner or run_step
    report = ExecutionReport(plan)
    t0 = time.perf_counter()
    if save_steps is not None:
        save_steps = Path(save_steps)
        save_steps.mkdir(parents=True, exist_ok=True)
        save_image(image, save_steps / "step0_input.png")
    for i, step in enumerate(plan, start=1):
        image, seconds = step_runner(image, step)
        rep = StepReport(i, step, seconds)
        if save_steps is not None:
            rep.saved_to = str(save_image(image, save_steps / f"step{i}_{step.task}_{step.tool}.png"))
        report.steps.append(rep)
        if on_step:
            on_step(rep)
    report.seconds = time.perf_counter() - t0
    return image, report


def run_plans(
    image: np.ndarray,
    plans: Sequence[Plan],
    on_step: Callable[[Step], None] | None = None,
    step_runner: Callable[[np.ndarray, Step], tuple[np.ndarray, float]] | None = None,
) -> list[np.ndarray]:
    """The result of every plan on ``image`` (same order), each shared prefix run once (a prefix
    tree: the fusion's candidates, the verify planner's). ``step_runner``: as in :func:`execute`."""
    step_runner = step_runner or run_step
    cache: dict[tuple[Step, ...], np.ndarray] = {(): image}

    def result(prefix: tuple[Step, ...]) -> np.ndarray:
        if prefix not in cache:
            cache[prefix] = step_runner(result(prefix[:-1]), prefix[-1])[0]
            if on_step:
                on_step(prefix[-1])
        return cache[prefix]

    return [result(tuple(p.steps)) for p in plans]
