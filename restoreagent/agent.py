"""The agent loop: look, plan, execute; in stepwise mode re-plan after every step and roll back.

One-shot: the planner sees the degraded image once and its whole plan is executed.
Stepwise (RestoreAgent's scenarios 2-5): after each step the planner sees the new image with the
execution history and answers with the rest of the plan, ``rollback`` (the step just taken made
things worse: undo it and never repeat it), or an empty plan (stop: the image is clean). Before
the planner is asked, no-reference quality checks (:mod:`restoreagent.quality`) compare the image
before and after the step; a step they judge harmful is rolled back the same way, so the next
prompt lists it as rolled back and the planner picks another tool or stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dialogue import Answer, History
from .executor import execute, run_step
from .imageio import save_image
from .plan import Plan, Step
from .planners import Planner, PlanRequest, get_planner
from .quality import (
    DEFAULT_QUALITY_CHECK,
    FAINT_NOT_WITH,
    REVEALS_NOISE,
    QualityCheck,
    execute_checked,
    judge_step,
    photo_noise,
    precheck,
    resolve_quality_checks,
)

log = logging.getLogger("restoreagent")

MAX_STEPS = 8  # a plan has at most one step per task; rollbacks add a few more rounds


def restore_auto(
    image: np.ndarray,
    planner: Planner | None = None,
    stepwise: bool = False,
    save_steps: str | Path | None = None,
    verbose: bool = False,
    quality_check=DEFAULT_QUALITY_CHECK,
    step_runner: Callable | None = None,
) -> tuple[np.ndarray, dict]:
    """Plan and restore ``image``; ``quality_check`` as in :func:`stepwise_restore`. One-shot, the
    checks judge each step of the plan as it runs (:func:`restoreagent.quality.execute_checked`).

    ``verbose``: log what the planner saw and each step (logger ``restoreagent``, level INFO).
    ``step_runner(image, step) -> (image, seconds)`` runs one step (default: the registry's tools)."""
    planner = planner or get_planner("vlm")
    t0 = time.perf_counter()
    if not stepwise and resolve_quality_checks(quality_check):
        answer = planner.plan(PlanRequest(image=image))
        _say(verbose, f"saw: {', '.join(answer.degradations) or 'nothing'}; plan: {answer.plan.text()}")
        restored, steps = execute_checked(
            answer.plan,
            image,
            quality_check,
            save_steps=save_steps,
            on_step=lambda r: _say(verbose, _step_line(r)),
            step_runner=step_runner,
        )
        kept = Plan(tuple(Step(s["task"], s["tool"]) for s in steps if s["kept"]))
        return restored, {
            "mode": "one-shot",
            "answers": [answer.text()],
            "plan": kept.to_json(),
            "steps": steps,
            "seconds": time.perf_counter() - t0,
        }
    if not stepwise:
        answer = planner.plan(PlanRequest(image=image))
        _say(verbose, f"saw: {', '.join(answer.degradations) or 'nothing'}; plan: {answer.plan.text()}")

        def show(rep):
            _say(
                verbose,
                f"step {rep.index}: {rep.step.task:<15} {rep.step.tool:<22} {rep.seconds * 1000:8.1f} ms",
            )

        restored, report = execute(answer.plan, image, save_steps=save_steps, on_step=show, step_runner=step_runner)
        return restored, {
            "mode": "one-shot",
            "answers": [answer.text()],
            **report.to_json(),
            "seconds": time.perf_counter() - t0,
        }
    run = stepwise_restore(
        image, planner, save_steps=save_steps, verbose=verbose, quality_check=quality_check, step_runner=step_runner
    )
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
    # every executed step: index, task, tool, seconds, kept; a rolled-back step (kept False) has
    # rolled_back_by "planner" or "quality"; a step a quality check judged has its verdicts under
    # "quality" (restoreagent.quality.QualityCheck.judge)
    steps: list[dict]

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

    @property
    def quality_rollbacks(self) -> int:
        """The rollbacks a quality check made (the others are the planner's)."""
        return sum(s.get("rolled_back_by") == "quality" for s in self.steps)

    def log(self) -> dict:
        return {"answers": [a.text() for a in self.answers], "steps": self.steps}


def stepwise_restore(
    image: np.ndarray,
    planner: Planner,
    save_steps=None,
    verbose: bool = False,
    quality_check: str | QualityCheck | Sequence[QualityCheck | str] | None = DEFAULT_QUALITY_CHECK,
    step_runner: Callable | None = None,
) -> StepwiseRun:
    """Re-plan after every step; roll back the steps the planner or a quality check judges harmful.

    ``quality_check``: the no-reference checks run after each step (a comma list of names from
    :data:`restoreagent.quality.QUALITY_CHECKS`, checks, or ``None``/``"none"`` for none). The
    default, ``noise,exposure``, rolls back a deblurring, super-resolution, denoising, deJPEG or
    deraining step that adds more than one grey level of noise, and a brightening step that moves
    the mean brightness away from mid-grey; dehazing is not judged (docs/quality_check.md).
    """
    checks = resolve_quality_checks(quality_check)
    step_runner = step_runner or run_step
    if save_steps is not None:
        Path(save_steps).mkdir(parents=True, exist_ok=True)
    history = History()
    current, previous = image, None
    scores, previous_scores = {}, {}  # check name -> score of current / previous (computed when needed)
    noise0 = photo_noise(checks, image)  # for the faint-noise rule (quality.judge_step)
    if noise0 is not None:
        scores["noise"] = noise0
    answers, steps = [], []
    for _ in range(MAX_STEPS):
        answer: Answer = planner.plan(PlanRequest(image=current, history=history))
        answers.append(answer)
        _say(verbose, f"planner: {answer.text()}")
        if any(s.task in FAINT_NOT_WITH for s in answer.plan):
            noise0 = None  # JPEG hides noise from the measure: no faint-noise rule (quality.FAINT_NOT_WITH)
        last = history.last_step
        if answer.rollback:
            if last is None:  # nothing to undo: the planner has nothing better to offer
                break
            current, scores = previous, previous_scores
            steps[-1]["kept"] = False
            steps[-1]["rolled_back_by"] = "planner"
            history = History(done=history.done, rolled_back=history.rolled_back + (last,))
            _say(verbose, f"rolled back {last.text()}")
            continue
        if last is not None:
            history = History(done=history.done + (last,), rolled_back=history.rolled_back)
        step = _next_step(answer.plan, history)
        if step is None:  # stop: nothing left to do, or only steps already judged harmful
            break
        pre = precheck(checks, step.task, current)
        if pre is not None and pre["rejected"]:  # not run at all (quality.precheck: no haze to remove)
            steps.append({"index": len(steps) + 1, "task": step.task, "tool": step.tool, "seconds": 0.0,
                          "kept": False, "rolled_back_by": "quality", "skipped": True, "quality": [pre]})
            history = History(done=history.done, rolled_back=history.rolled_back + (step,))
            _say(verbose, f"skipped {step.text()} (quality pre-check: {pre['check']} {pre['before']:g} < {pre['threshold']:g})")
            continue
        out, seconds = step_runner(current, step)
        rec = {
            "index": len(steps) + 1,
            "task": step.task,
            "tool": step.tool,
            "seconds": round(seconds, 4),
            "kept": True,
        }
        if save_steps is not None:
            rec["saved_to"] = str(
                save_image(out, Path(save_steps) / f"step{rec['index']}_{step.task}_{step.tool}.png")
            )
        steps.append(rec)
        _say(verbose, f"step {rec['index']}: {step.task:<15} {step.tool:<22} {seconds * 1000:8.1f} ms")
        verdicts, out_scores = judge_step(checks, step.task, current, out, scores, noise0)
        if pre is not None:
            verdicts.insert(0, pre)
        if verdicts:
            rec["quality"] = verdicts
        if any(v["rejected"] for v in verdicts):  # undone at once, as the planner's rollback would
            rec["kept"] = False
            rec["rolled_back_by"] = "quality"
            history = History(done=history.done, rolled_back=history.rolled_back + (step,))
            why = ", ".join(f"{v['check']} worse by {v['worse_by']:g}" for v in verdicts if v["rejected"])
            _say(verbose, f"rolled back {step.text()} (quality check: {why})")
            continue
        previous, previous_scores = current, scores
        current, scores = out, out_scores
        if step.task in REVEALS_NOISE:
            noise0 = None  # the faint-noise rule describes the photo's noise, not what brightening revealed
        history = History(done=history.done, rolled_back=history.rolled_back, last_step=step)
    return StepwiseRun(current, answers, steps)


def _next_step(plan: Plan, history: History) -> Step | None:
    done = {s.task for s in history.done}
    for step in plan:
        if step.task not in done and step not in history.rolled_back:
            return step
    return None


def _step_line(rec: dict) -> str:
    line = f"step {rec['index']}: {rec['task']:<15} {rec['tool']:<22} {rec['seconds'] * 1000:8.1f} ms"
    if rec.get("added_by"):
        line += f" (added: {rec['added_by']})"
    if rec.get("skipped"):
        pre = rec["quality"][0]
        line += f" -> not run (quality pre-check: {pre['check']} {pre['before']:g} < {pre['threshold']:g})"
    elif not rec["kept"]:
        why = ", ".join(
            f"{v['check']}{' (' + v['rule'] + ')' if v.get('rule') else ''} worse by {v['worse_by']:g}"
            for v in rec.get("quality", [])
            if v["rejected"]
        )
        line += f" -> rolled back (quality check: {why})"
    return line


def _say(verbose: bool, msg: str) -> None:
    """Progress messages go to the ``restoreagent`` logger (the CLI shows INFO on stderr)."""
    if verbose:
        log.info(msg)
