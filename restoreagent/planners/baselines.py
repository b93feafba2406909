"""Baseline planners: told the true degradations, they differ in how they choose order and tools."""

from __future__ import annotations

import numpy as np

from ..catalog.learned import severity_ranges
from ..dialogue import Answer
from ..errors import RestoreAgentError
from ..perception import default_detector
from ..plan import Plan
from ..tasks import DEGRADATION_FOR_TASK, TASK_FOR_DEGRADATION
from ..tools.fixed_recipe import fixed_recipe
from ..tools.registry import tools_for_task
from .base import PlanRequest


def _true_tasks(request: PlanRequest) -> list[str]:
    if request.degradations is None:
        raise RestoreAgentError(
            "this baseline planner needs the true degradations (PlanRequest.degradations), which a photo "
            "does not carry; on a photo use the planner 'vlm' or 'fixed+detect'"
        )
    return [TASK_FOR_DEGRADATION[d] for d in request.degradations]


class RandomPlanner:
    """Random order and random tool per task, for the true degradation set."""

    name = "random"

    def plan(self, request: PlanRequest) -> Answer:
        tasks = _true_tasks(request)
        rng = np.random.default_rng([request.seed, 7919])
        order = [tasks[i] for i in rng.permutation(len(tasks))]
        steps = []
        for t in order:
            tools = tools_for_task(t)
            steps.append((t, tools[int(rng.integers(len(tools)))]))
        return Answer(tuple(request.degradations), Plan.of(steps))


class FixedPlanner:
    """One documented expert recipe (catalog/fixed_recipe.yaml) for every image."""

    name = "fixed"

    def plan(self, request: PlanRequest) -> Answer:
        tasks = _true_tasks(request)  # first: it explains a missing truth, tuple(None) would not
        return Answer(tuple(request.degradations), Plan.of(fixed_recipe(set(tasks))))


class OraclePlanner:
    """The best pipeline of the exhaustive search (an upper bound, ranking 0%)."""

    name = "oracle"

    def plan(self, request: PlanRequest) -> Answer:
        if request.search is None:
            raise RestoreAgentError("the oracle planner needs the exhaustive-search result (PlanRequest.search)")
        return Answer(tuple(request.degradations or ()), request.search.best.plan)


def severity_matched_plan(record: dict) -> Plan:
    """The fixed recipe's order with each tool matched to the recorded severity (restoreagent.catalog.learned.severity_ranges).

    A teacher for the planner's first training stage: it needs the degradation record (truth), so it is
    not a planner for unseen images; the learned planner has to infer severity from pixels.
    """
    params = {c["name"]: c["params"] for c in record["chain"]}
    ranges = severity_ranges()
    steps = []
    for task, default_tool in fixed_recipe({TASK_FOR_DEGRADATION[d] for d in params}):
        tool = default_tool
        rule = ranges.get(task)
        value = params[DEGRADATION_FOR_TASK[task]].get(rule["param"]) if rule else None
        if value is not None:
            installed = set(tools_for_task(task))
            options = {t: r for t, r in rule["tools"].items() if t in installed}
            if options:  # the range containing the value, else the nearest one
                tool = min(options, key=lambda t: 0 if options[t][0] <= value < options[t][1] else min(abs(value - options[t][0]), abs(value - options[t][1])))
        steps.append((task, tool))
    return Plan.of(steps)


class FixedDetectPlanner:
    """What a user gets without the language model: the detector's set, the fixed recipe's order,
    and each tool matched to the detector's severity estimate (as :func:`severity_matched_plan`).

    Unlike the other baselines it sees only the image (``request.degradations`` is ignored).
    """

    name = "fixed+detect"

    def __init__(self, detector=None):
        self._detector = detector

    def plan(self, request: PlanRequest) -> Answer:
        detector = self._detector or default_detector()
        found = detector.detect(request.image)
        record = {"chain": [{"name": d, "params": found.params.get(d, {})} for d in found.degradations]}
        return Answer(tuple(found.degradations), severity_matched_plan(record))
