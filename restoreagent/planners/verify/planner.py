"""The ``verify`` planner: propose, run, look, choose.

1. the detector reads the photo; the likely degradation sets are its decision and the sets that
   flip its least certain labels (:func:`.candidates.likely_sets`);
2. the plan scorer proposes its best pipelines for each set;
3. every candidate runs on a view of the photo (the photo itself up to 256 px a side, else a
   2 x 2 mosaic of native 128 px tiles from its corners: the cost does not grow with the photo),
   shared prefixes once;
4. the verifier scores each output from what the detector still sees in it, how it moved and where
   it came from, and the best-scored candidate is the plan.

Planning costs the candidates' tool calls on the view (about 1 s on 2 CPU cores), against
milliseconds for the ``ranker`` planner: it buys the right degradation set where the detector
hesitates, and the better tool where the scorer's first choice is wrong.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ...dialogue import Answer
from ...executor import run_plans
from ...perception import default_detector
from ...plan import Plan
from ..base import PlanRequest
from ..ranker import RankerPlanner
from ..ranker.features import features_from_raw
from .candidates import likely_sets, propose, with_prefixes
from .features import (
    candidate_table,
    consistency_stats,
    detector_view,
    image_stats,
    no_reference_stats,
    verifier_features,
)
from .weights import load_verifier, shipped_file

VIEW = 256


def view_of(image: np.ndarray, side: int = VIEW) -> np.ndarray:
    """The photo itself when it fits in ``side`` x ``side``; else a 2 x 2 mosaic of native
    ``side / 2`` px tiles spread over it (the corners of a large photo: light, shadows and
    content from all of it, at its own pixel scale, as the planner's view)."""
    h, w = image.shape[:2]
    if h <= side and w <= side:
        return image
    t = side // 2
    img = image
    if h < t or w < t:
        img = np.pad(image, ((0, max(0, t - h)), (0, max(0, t - w)), (0, 0)), mode="reflect")
        h, w = img.shape[:2]
    ys, xs = np.linspace(0, h - t, 2).round().astype(int), np.linspace(0, w - t, 2).round().astype(int)
    rows = [np.concatenate([img[y : y + t, x : x + t] for x in xs], axis=1) for y in ys]
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


class VerifyPlanner:
    name = "verify"

    def __init__(self, model=None, detector=None, ranker=None, step_runner=None):
        self.folder = model
        self._detector = detector
        self.ranker = ranker or RankerPlanner(detector=detector)
        self.step_runner = step_runner  # (image, step) -> (image, seconds); None: the registry's tools
        self._last = None

    @property
    def source(self) -> str:
        return str(self.folder or shipped_file())

    @property
    def detector(self):
        return self._detector or default_detector()

    def ranked(self, image: np.ndarray) -> list[tuple[Answer, float]]:
        """Every candidate as an answer with the verifier's score, best first (the last photo's
        answer is kept: "not satisfied" asks again for the same photo)."""
        key = (image.shape, hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest())
        if self._last is None or self._last[0] != key:
            self._last = (key, self._ranked(image))
        return list(self._last[1])

    def _ranked(self, image: np.ndarray) -> list[tuple[Answer, float]]:
        import torch

        model, meta = load_verifier(self.folder)
        det = self.detector
        logits, sev, feats = det.raw(image)
        sets = likely_sets(det, logits, n_sets=meta["n_sets"])
        cands = propose(self.ranker, features_from_raw(logits, sev, feats), sets, meta["per_set"])
        if model.cfg.prefixes:
            cands = with_prefixes(cands, det, logits)
        if len(cands) == 1:
            return [(Answer(cands[0].set.degradations, cands[0].plan), 0.0)]
        view = view_of(image)
        outs = run_plans(view, [c.plan for c in cands], step_runner=self.step_runner)
        seen = [detector_view(det, o) for o in outs]
        in_raw, in_emb = detector_view(det, view)
        emb = model.cfg.embedding
        x = verifier_features(candidate_table(cands), np.stack([v[0] for v in seen]), in_raw, image_stats(outs, view),
                              np.stack([v[1] for v in seen]) if emb else None, in_emb if emb else None,
                              no_reference_stats(outs, view) if model.cfg.no_reference else None,
                              consistency_stats(outs, view) if model.cfg.consistency else None,
                              np.array([c.dropped for c in cands]) if model.cfg.prefixes else None)
        pixels = (None, None)
        if model.cfg.pixels:  # as the verifier was trained: 8-bit pixels in [0, 1]
            from ...imageio import quantize

            pixels = (torch.from_numpy(np.stack([quantize(o) for o in outs])).permute(0, 3, 1, 2)[None],
                      torch.from_numpy(quantize(view)).permute(2, 0, 1)[None])
        with torch.inference_mode():
            s = model(torch.from_numpy(x[None]), torch.ones(1, len(cands), dtype=torch.bool), *pixels)[0].numpy()
        order = np.argsort(-s, kind="stable")
        return [(Answer(cands[i].set.degradations, cands[i].plan), float(s[i])) for i in order]

    def plan(self, request: PlanRequest) -> Answer:
        ranked = self.ranked(request.image)
        return ranked[0][0] if ranked else Answer((), Plan())

    def plan_candidates(self, request: PlanRequest, k: int) -> list[Answer]:
        """The verifier's ``k`` best answers ("not satisfied" offers the next one)."""
        return [a for a, _ in self.ranked(request.image)[:k]]
