"""The learned tools' declarations: one file per tool, ``restoreagent/catalog/learned/NAME.yaml``.

A declaration is read three ways:

- the catalogue entry (:meth:`LearnedTool.spec`): the registry's tool, built by
  ``restoreagent.tools.learned:build_learned_tool`` from ``assets/tools/NAME.safetensors``;
- how it is trained (``degradation``, ``ranges``, ``arch``, ``guides`` and the ``data`` /
  ``train`` overrides of the train-tool job, :mod:`restoreagent.jobs.train_tool`);
- the severity range (``severity``): where the planner's stage-1 targets choose this tool
  (:func:`restoreagent.planners.baselines.severity_matched_plan`; the parameter is the task's in
  ``severity_ranges.yaml``, which also holds the classical tools' ranges).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..errors import UnknownNameError
from . import load_yaml
from .spec import ToolSpec

BUILDER = "restoreagent.tools.learned:build_learned_tool"


@dataclass(frozen=True)
class LearnedTool:
    name: str
    task: str
    description: str
    degradation: str  # what it is trained to undo (restoreagent.degradations)
    arch: str  # restoreagent.tools.learned.nets
    cost_s: float | None = None
    candidate: bool = True
    severity: tuple[float, float] | None = None
    ranges: dict[str, Any] = field(default_factory=dict)  # narrowed generator ranges of the training pairs
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    guides: tuple[dict, ...] = ()  # classical tools whose outputs the network also reads
    data: dict[str, Any] = field(default_factory=dict)  # train-tool job: overrides of `data`
    train: dict[str, Any] = field(default_factory=dict)  # train-tool job: overrides of `train`

    @property
    def weights(self) -> str:
        return f"assets/tools/{self.name}.safetensors"

    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, task=self.task, kind="learned", description=self.description, builder=BUILDER,
                        weights=self.weights, cost_s=self.cost_s, candidate=self.candidate)


@functools.cache
def learned_tools() -> dict[str, LearnedTool]:
    """Every declaration, by name (sorted)."""
    folder = resources.files(__package__).joinpath("learned")
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            raw = load_yaml(entry.read_text())
            name = entry.name.removesuffix(".yaml")
            raw["guides"] = tuple(raw.get("guides") or ())
            if raw.get("severity") is not None:
                raw["severity"] = tuple(raw["severity"])
            out[name] = LearnedTool(name=name, **raw)
    return out


def learned_tool(name: str) -> LearnedTool:
    tools = learned_tools()
    if name not in tools:
        raise UnknownNameError(f"unknown learned tool {name!r}; declared: {', '.join(tools)}")
    return tools[name]


@functools.cache
def severity_ranges() -> dict:
    """Task -> {param, tools: {tool: [lo, hi]}}: the learned tools' declared ranges first (ordered by
    their lower bound), then the classical tools' (``severity_ranges.yaml``)."""
    table = load_yaml(resources.files(__package__).joinpath("severity_ranges.yaml").read_text())
    for task, rule in table.items():
        learned = sorted((t for t in learned_tools().values() if t.task == task and t.severity is not None),
                         key=lambda t: t.severity[0])
        rule["tools"] = {**{t.name: list(t.severity) for t in learned}, **rule.get("tools", {})}
    return table
