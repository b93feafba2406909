"""Learned fusion: a small network blends K candidate restorations of one image, pixel by pixel.

- :mod:`.model`: the network (any K; per-pixel softmax weights, so a convex combination);
- :mod:`.candidates`: which plans are blended (a plan, its strength brackets and other variants) and running them;
- :mod:`.fuse`: blending (``fuse``) and ``run --fuse K`` (``fuse_plan``);
- :mod:`.weights`: the shipped weight files (``restoreagent/assets/fusion/``: the general network and
  per-task-set specialists);
- :mod:`.mix`: the whole-photo mix heads (one per task set: each candidate's share of the photo,
  from plain statistics; ``run --fuse`` adds the network's per-pixel logits to it);
- :mod:`.train`: the ``train-fusion`` and ``train-fusion-mix`` jobs (candidate sets from the generator, then training).

docs/fusion.md has the measurements.
"""

from .candidates import all_plans, candidate_plans, run_plans
from .fuse import blend, fuse, fuse_plan, fusion_weights
from .model import FusionNet
from .weights import load_fusion, shipped_weights, weights_for_tasks

__all__ = [
    "FusionNet",
    "all_plans",
    "blend",
    "candidate_plans",
    "fuse",
    "fuse_plan",
    "fusion_weights",
    "load_fusion",
    "run_plans",
    "shipped_weights",
    "weights_for_tasks",
]
