"""The planner interface every planner implements (baselines now, the learned VLM planner too)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..dialogue import Answer, History
from ..errors import UnknownNameError


@dataclass
class PlanRequest:
    """What a planner may look at.

    ``image`` is all a real planner (the VLM) uses. Baselines are told the truth:
    ``degradations`` (the true set) and, for the oracle, ``search`` (the exhaustive-search result).
    ``seed`` makes random planners reproducible per request.
    """

    image: np.ndarray
    history: History | None = None
    degradations: tuple[str, ...] | None = None
    search: Any = None
    seed: int = 0


class Planner(Protocol):
    name: str

    def plan(self, request: PlanRequest) -> Answer:
        """Return the answer: degradations seen and the plan (or rollback / stop)."""
        ...


# Name -> "module:factory"; imported lazily so the VLM's heavy imports only happen when used.
_PLANNERS = {
    "random": "restoreagent.planners.baselines:RandomPlanner",
    "fixed": "restoreagent.planners.baselines:FixedPlanner",
    "oracle": "restoreagent.planners.baselines:OraclePlanner",
    "fixed+detect": "restoreagent.planners.baselines:FixedDetectPlanner",
    "vlm": "restoreagent.planners.vlm:VLMPlanner",
    "ranker": "restoreagent.planners.ranker:RankerPlanner",
    "ranker+truth": "restoreagent.planners.ranker.planner:truth_ranker",
    "verify": "restoreagent.planners.verify:VerifyPlanner",
}


def planner_names() -> list[str]:
    return list(_PLANNERS)


def get_planner(name: str, **kwargs) -> Planner:
    if name not in _PLANNERS:
        raise UnknownNameError(f"unknown planner {name!r}; planners: {', '.join(_PLANNERS)}")
    module, _, attr = _PLANNERS[name].partition(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)
