"""The agent loop: look, plan, execute; in stepwise mode re-plan after every step and roll back.

One-shot: the planner sees the degraded image once and its whole plan is executed.
Stepwise (RestoreAgent's scenarios 2-5): after each step the planner sees the new image with the
execution history and answers with the rest of the plan, ``rollback`` (the step just taken made
things worse: undo it and never repeat it), or an empty plan (stop: the image is clean).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dialogue import Answer, History
from .executor import execute, run_step
from .plan import Plan, Step
from .planners import Planner, PlanRequest, get_planner

MAX_STEPS = 8  # a plan has at most one step per task; rollbacks add a few more rounds


def restore_auto(
    image: np.ndarray,
    planner: Planner | None = None,
    stepwise: bool = False,
    save_steps: str | Path | None = None,
    verbose: bool = False,
) -> tuple[np.ndarray, dict]:
    planner = planner or get_planner("vlm")
    t0 = time.perf_counter()
    if not stepwise:
        answer = planner.plan(PlanRequest(image=image))
        _say(verbose, f"saw: {', '.join(answer.degradations) or 'nothing'}; plan: {answer.plan.text()}")

        def show(rep):
            _say(
                verbose,
                f"step {rep.index}: {rep.step.task:<15} {rep.step.tool:<22} {rep.seconds * 1000:8.1f} ms",
            )

        restored, report = execute(answer.plan, image, save_steps=save_steps, on_step=show)
        return restored, {
            "mode": "one-shot",
            "answers": [answer.text()],
            **report.to_json(),
            "seconds": time.perf_counter() - t0,
        }
    run = stepwise_restore(image, planner, save_steps=save_steps, verbose=verbose)
    return run.image, {
        "mode": "stepwise",
        "plan": run.kept_plan.to_json(),
        **run.log(),
        "seconds": time.perf_counter() - t0,
    }


@dataclass
class StepwiseRun:
    """What the stepwise loop did: the final image, every planner answer, every executed step."""

    image: np.ndarray  # the image after the kept steps
    answers: list[Answer]  # one per planner call, in order
    steps: list[dict]  # every executed step: index, task, tool, seconds, kept (False: rolled back)

    @property
    def kept_plan(self) -> Plan:
        """The executed steps minus the rolled-back ones: the pipeline that produced ``image``."""
        return Plan(tuple(Step(s["task"], s["tool"]) for s in self.steps if s["kept"]))

    @property
    def planner_calls(self) -> int:
        return len(self.answers)

    @property
    def rollbacks(self) -> int:
        return sum(not s["kept"] for s in self.steps)

    def log(self) -> dict:
        return {"answers": [a.text() for a in self.answers], "steps": self.steps}


def stepwise_restore(
    image: np.ndarray, planner: Planner, save_steps=None, verbose: bool = False
) -> StepwiseRun:
    from .imageio import save_image

    if save_steps is not None:
        Path(save_steps).mkdir(parents=True, exist_ok=True)
    history = History()
    current, previous = image, None
    answers, steps = [], []
    for _ in range(MAX_STEPS):
        answer: Answer = planner.plan(PlanRequest(image=current, history=history))
        answers.append(answer)
        _say(verbose, f"planner: {answer.text()}")
        last = history.last_step
        if answer.rollback:
            if last is None:  # nothing to undo: the planner has nothing better to offer
                break
            current = previous
            steps[-1]["kept"] = False
            history = History(done=history.done, rolled_back=history.rolled_back + (last,))
            _say(verbose, f"rolled back {last.text()}")
            continue
        if last is not None:
            history = History(done=history.done + (last,), rolled_back=history.rolled_back)
        step = _next_step(answer.plan, history)
        if step is None:  # stop: nothing left to do, or only steps already judged harmful
            break
        previous = current
        current, seconds = run_step(current, step)
        rec = {
            "index": len(steps) + 1,
            "task": step.task,
            "tool": step.tool,
            "seconds": round(seconds, 4),
            "kept": True,
        }
        if save_steps is not None:
            rec["saved_to"] = str(
                save_image(current, Path(save_steps) / f"step{rec['index']}_{step.task}_{step.tool}.png")
            )
        steps.append(rec)
        _say(verbose, f"step {rec['index']}: {step.task:<15} {step.tool:<22} {seconds * 1000:8.1f} ms")
        history = History(done=history.done, rolled_back=history.rolled_back, last_step=step)
    return StepwiseRun(current, answers, steps)


def _next_step(plan: Plan, history: History) -> Step | None:
    done = {s.task for s in history.done}
    for step in plan:
        if step.task not in done and step not in history.rolled_back:
            return step
    return None


def _say(verbose: bool, msg: str) -> None:
    if verbose:
        print(msg, flush=True)
