"""The ``ranker`` planner: the detector's set, then the pipeline the plan scorer rates best.

Every order and tool choice for the detected tasks is a candidate (what the exhaustive search
would run, at most a few hundred); the scorer rates all of them in one batch from the image's
features, so the cost is the detector's pass plus a few milliseconds.
"""

from __future__ import annotations

import numpy as np

from ...dialogue import Answer
from ...perception import default_detector
from ...plan import Plan
from ...search import default_toolset
from ...tasks import TASK_FOR_DEGRADATION, physical_order
from ..base import PlanRequest
from .features import all_pipelines, features_from_raw, image_features
from .weights import load_ranker, shipped_folder


class RankerPlanner:
    """Detector set + the best-scored pipeline. ``truth=True`` plans for the told degradations
    (``PlanRequest.degradations``) instead: a diagnostic of the scorer alone, like ``fixed``."""

    name = "ranker"

    def __init__(self, model=None, detector=None, truth: bool = False):
        self.folder = model
        self._detector = detector
        self.truth = truth
        self._cache: dict = {}
        if truth:
            self.name = "ranker+truth"

    @property
    def source(self) -> str:
        """The scorer folder (the benchmark's cache key hashes its files)."""
        return str(self.folder or shipped_folder())

    @property
    def detector(self):
        return self._detector or default_detector()

    def features(self, image: np.ndarray) -> np.ndarray:
        return image_features(self.detector, image)

    def scores(self, image_or_features: np.ndarray, plans: list[Plan]) -> np.ndarray:
        """The scorer's rating of each plan on one image (higher is better; NaN for plans it cannot read)."""
        import torch

        model, encoder, _ = load_ranker(self.folder)
        feats = image_or_features if image_or_features.ndim == 1 else self.features(image_or_features)
        known = [i for i, p in enumerate(plans) if encoder.knows(p)]
        out = np.full(len(plans), np.nan)
        if known:
            with torch.inference_mode():
                x = torch.from_numpy(encoder.encode([plans[i] for i in known]))
                img = torch.from_numpy(feats[None]).expand(len(known), -1)
                out[known] = model(img, x).numpy()
        return out

    def rerank(self, image: np.ndarray, plans: list[Plan]) -> list[tuple[Plan, float]]:
        """``plans`` best first by the scorer (plans it cannot read go last, in their given order)."""
        s = self.scores(image, plans)
        order = sorted(range(len(plans)), key=lambda i: (np.isnan(s[i]), -np.nan_to_num(s[i])))
        return [(plans[i], float(s[i])) for i in order]

    def ranked(self, features: np.ndarray, degradations, k: int | None = None) -> list[Plan]:
        """Every pipeline for ``degradations``' tasks, best first by the scorer (the first ``k``)."""
        return self.ranked_scores(features, degradations, k)[0]

    def ranked_scores(self, features: np.ndarray, degradations, k: int | None = None) -> tuple[list[Plan], np.ndarray]:
        """:meth:`ranked` and the scorer's score of each (zeros for the empty plan of no task)."""
        import torch

        tasks = tuple(TASK_FOR_DEGRADATION[d] for d in physical_order(degradations))
        if not tasks:
            return [Plan()], np.zeros(1)
        model, _, _ = load_ranker(self.folder)
        candidates, plan_emb = self._candidates(tasks)
        with torch.inference_mode():
            s = model.score(model.image(torch.from_numpy(features[None])), plan_emb).numpy()
        order = np.argsort(-s, kind="stable")[:k]
        return [candidates[i] for i in order], s[order].astype(np.float64)

    def _candidates(self, tasks: tuple[str, ...]):
        """(every pipeline of the tasks the scorer can read, their plan-tower outputs): made once
        per task set and toolbox, since neither depends on the image (a plan costs the image tower
        and the head only)."""
        import torch

        toolset = default_toolset(tasks)
        key = (tasks, tuple(tuple(v) for v in toolset.values()))
        if key not in self._cache:
            model, encoder, _ = load_ranker(self.folder)
            plans = [p for p in all_pipelines(toolset) if encoder.knows(p)]
            with torch.inference_mode():
                self._cache[key] = (plans, model.plan(torch.from_numpy(encoder.encode(plans))))
        return self._cache[key]

    def best_plan(self, features: np.ndarray, degradations) -> Plan:
        return self.ranked(features, degradations, k=1)[0]

    def plan(self, request: PlanRequest) -> Answer:
        logits, sev, feats = self.detector.raw(request.image)
        features = features_from_raw(logits, sev, feats)
        if self.truth and request.degradations is not None:
            degradations = tuple(request.degradations)
        else:
            degradations = tuple(self.detector.decide(logits, sev, tiles=int(feats.shape[0])).degradations)
        return Answer(degradations, self.best_plan(features, degradations))


def truth_ranker(**kwargs) -> RankerPlanner:
    return RankerPlanner(truth=True, **kwargs)
