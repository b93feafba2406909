"""The words the agent and the planner exchange: prompts with execution history, and answers.

One place defines them, so the SFT builder (training targets), the planner (parsing its output)
and the agent loop (building prompts) cannot drift apart. Modelled on RestoreAgent's
"How to enhance the quality of this image? [Execution history: ...]".

Answers are one of:
  ``saw: noise, jpeg | plan: denoise:nlm_mid, dejpeg:deblock_mild``   (what to do next)
  ``saw: none | plan: none``                                           (stop: the image is clean)
  ``rollback``                                                         (the last step made it worse)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import PlanError
from .plan import Plan, Step, parse_plan
from .tasks import DEGRADATIONS, physical_order

QUESTION = "How to enhance the quality of this image?"
ROLLBACK = "rollback"


@dataclass(frozen=True)
class History:
    """What has been done to the image so far."""

    done: tuple[Step, ...] = ()  # steps executed and kept, in order
    rolled_back: tuple[Step, ...] = ()  # steps that were tried, judged harmful and undone
    last_step: Step | None = None  # the step just executed (asking: keep it or roll back?)

    def is_empty(self) -> bool:
        return not self.done and not self.rolled_back and self.last_step is None


def prompt(history: History | None = None) -> str:
    """The question put to the planner, with the execution history when there is one."""
    if history is None or history.is_empty():
        return QUESTION
    parts = []
    if history.done:
        parts.append("done: " + ", ".join(s.text() for s in history.done))
    if history.rolled_back:
        parts.append("rolled back: " + ", ".join(s.text() for s in history.rolled_back))
    if history.last_step is not None:
        parts.append("last: " + history.last_step.text())
    return f"{QUESTION} Execution history: {'; '.join(parts)}."


@dataclass(frozen=True)
class Answer:
    degradations: tuple[str, ...] = ()
    plan: Plan = field(default_factory=Plan)
    rollback: bool = False

    @property
    def stop(self) -> bool:
        return not self.rollback and len(self.plan) == 0

    def text(self) -> str:
        if self.rollback:
            return ROLLBACK
        saw = ", ".join(physical_order(self.degradations)) if self.degradations else "none"
        return f"saw: {saw} | plan: {self.plan.text()}"


def parse_answer(text: str, check_tools: bool = True) -> Answer:
    """Parse a planner answer; raises PlanError naming what is wrong."""
    text = text.strip()
    if text == ROLLBACK:
        return Answer(rollback=True)
    saw_part, sep, plan_part = text.partition("|")
    if not sep or not saw_part.strip().startswith("saw:") or not plan_part.strip().startswith("plan:"):
        raise PlanError(f"planner answer {text!r} is not 'saw: ... | plan: ...' or 'rollback'")
    saw = saw_part.strip()[len("saw:"):].strip()
    degradations = () if saw in ("", "none") else tuple(d.strip() for d in saw.split(","))
    for d in degradations:
        if d not in DEGRADATIONS:
            raise PlanError(f"unknown degradation {d!r} in planner answer; known: {', '.join(DEGRADATIONS)}")
    plan = parse_plan(plan_part.strip()[len("plan:"):], check_tools=check_tools)
    return Answer(degradations=degradations, plan=plan)
