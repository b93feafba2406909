"""What the plan scorer reads: a pipeline as a fixed-length vector, an image as the detector's view.

A pipeline (ordered steps ``task:tool``) is encoded by
- which tool runs at which position (one-hot over the step vocabulary x ``MAX_STEPS`` positions),
- which tools it uses at all (the same vocabulary, position-free: what generalises across lengths),
- which task comes before which (a task x task table: the order, which is what the exhaustive search
  mostly decides).
An image is the detector's tile embedding (mean over tiles), its raw presence logits and its
severity estimates: the same signals the planner's vision tower gives the language model.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from ...plan import Plan, Step
from ...tasks import TASKS

MAX_STEPS = 5  # the 8 core tasks come 1-4 at a time, +1 for the snow extension


class PlanEncoder:
    """Plans <-> feature vectors, over a fixed step vocabulary (``task:tool`` strings)."""

    def __init__(self, vocabulary: Sequence[str], tasks: Sequence[str] = TASKS):
        self.vocabulary = list(vocabulary)
        self.tasks = list(tasks)
        self._step = {s: i for i, s in enumerate(self.vocabulary)}
        self._task = {t: i for i, t in enumerate(self.tasks)}
        v, t = len(self.vocabulary), len(self.tasks)
        self.dim = v * MAX_STEPS + v + t * t

    @classmethod
    def from_toolset(cls, toolset: dict[str, list[str]]) -> PlanEncoder:
        return cls([f"{t}:{tool}" for t in TASKS if t in toolset for tool in toolset[t]])

    def knows(self, plan: Plan) -> bool:
        return len(plan.steps) <= MAX_STEPS and all(s.text() in self._step for s in plan.steps)

    def encode(self, plans: Iterable[Plan | Sequence[Step]]) -> np.ndarray:
        rows = []
        v, n_t = len(self.vocabulary), len(self.tasks)
        for plan in plans:
            steps = plan.steps if isinstance(plan, Plan) else tuple(plan)
            x = np.zeros(self.dim, np.float32)
            for pos, s in enumerate(steps):
                i = self._step[s.text()]
                x[i * MAX_STEPS + min(pos, MAX_STEPS - 1)] = 1.0
                x[v * MAX_STEPS + i] = 1.0
            base = v * MAX_STEPS + v
            for a, b in itertools.combinations(steps, 2):  # a runs before b
                x[base + self._task[a.task] * n_t + self._task[b.task]] = 1.0
            rows.append(x)
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)


def all_pipelines(toolset: dict[str, list[str]]) -> list[Plan]:
    """Every order of the tasks times every tool choice: the exhaustive search's candidates."""
    tasks = list(toolset)
    out = []
    for order in itertools.permutations(tasks):
        for tools in itertools.product(*(toolset[t] for t in order)):
            out.append(Plan(tuple(Step(t, tool) for t, tool in zip(order, tools))))
    return out


def image_features(detector, image: np.ndarray) -> np.ndarray:
    """The detector's view of an image: mean tile embedding, presence logits, severities (float32)."""
    return features_from_raw(*detector.raw(image))


def features_from_raw(logits, severities, tile_features) -> np.ndarray:
    """:func:`image_features` from the outputs of ``Detector.raw`` (when the caller needs them too)."""
    emb = tile_features.mean(0).cpu().numpy()
    return np.concatenate([emb, np.asarray(logits, np.float32), np.asarray(severities, np.float32)]).astype(np.float32)
