"""Plans: an ordered list of (task, tool) steps.

Text form (what a person types and the planner emits)::

    denoise:nlm_mid, dejpeg:deblock_mild

JSON form: ``{"steps": [{"task": "denoise", "tool": "nlm_mid"}, ...]}``. The empty plan (nothing
to do) is written ``none`` in text. Parsing checks every task and tool against the registry and
says what exists when a name is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import PlanError
from .tasks import TASKS
from .tools.registry import list_specs

EMPTY_PLAN_TEXT = "none"


@dataclass(frozen=True)
class Step:
    task: str
    tool: str

    def text(self) -> str:
        return f"{self.task}:{self.tool}"


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()

    @classmethod
    def of(cls, pairs) -> Plan:
        """Build from an iterable of (task, tool) pairs or Steps (no registry check)."""
        return cls(tuple(p if isinstance(p, Step) else Step(*p) for p in pairs))

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(s.task for s in self.steps)

    @property
    def tools(self) -> tuple[str, ...]:
        return tuple(s.tool for s in self.steps)

    def text(self) -> str:
        return ", ".join(s.text() for s in self.steps) if self.steps else EMPTY_PLAN_TEXT

    def to_json(self) -> dict:
        return {"steps": [{"task": s.task, "tool": s.tool} for s in self.steps], "text": self.text()}

    def __str__(self) -> str:
        return self.text()


def parse_plan(text: str, check_tools: bool = True) -> Plan:
    """Parse the text form. ``check_tools`` validates tool names and their task in the registry."""
    text = text.strip()
    if not text or text.lower() == EMPTY_PLAN_TEXT:
        return Plan()
    steps = []
    for chunk in text.split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        task, sep, tool = chunk.partition(":")
        task, tool = task.strip(), tool.strip()
        if not sep or not task or not tool:
            raise PlanError(f"plan step {chunk!r} is not 'task:tool' (e.g. 'denoise:nlm_mid')")
        steps.append(Step(task, tool))
    plan = Plan(tuple(steps))
    validate_plan(plan, check_tools=check_tools)
    return plan


def plan_from_json(obj: dict | str, check_tools: bool = True) -> Plan:
    if isinstance(obj, str):
        obj = json.loads(obj)
    try:
        plan = Plan.of((s["task"], s["tool"]) for s in obj["steps"])
    except (KeyError, TypeError) as e:
        raise PlanError(f"plan JSON must be {{'steps': [{{'task':..., 'tool':...}}]}}: {e}") from None
    validate_plan(plan, check_tools=check_tools)
    return plan


def validate_plan(plan: Plan, check_tools: bool = True) -> None:
    seen = set()
    for step in plan:
        if step.task not in TASKS:
            raise PlanError(f"unknown task {step.task!r}; tasks: {', '.join(TASKS)}")
        if step.task in seen:
            raise PlanError(f"task {step.task!r} appears twice in the plan")
        seen.add(step.task)
        if check_tools:
            specs = {s.name: s for s in list_specs()}
            here = [s.name for s in specs.values() if s.task == step.task and s.available]
            if step.tool not in specs or specs[step.tool].task != step.task:
                raise PlanError(f"unknown tool {step.tool!r} for {step.task}; tools for {step.task}: {', '.join(here)}")
            if not specs[step.tool].available:
                raise PlanError(
                    f"tool {step.tool!r} is not available here (missing {', '.join(specs[step.tool].missing)}); "
                    f"tools for {step.task}: {', '.join(here)}"
                )
