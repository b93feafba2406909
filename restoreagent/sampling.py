"""The benchmark's sampling protocol: which image, which degradation combination and which seed
each sample uses, deterministic in the seed. Shared by the benchmark (:mod:`restoreagent.bench`)
and the detector's evaluation (:mod:`restoreagent.perception.evaluate`), so both see the same samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .degradations import sample_combination
from .jobs.bench import BenchConfig


def sample_plan(cfg: BenchConfig, files: list[Path], combos: list[list[str]] | None) -> list[dict]:
    """Which image and which combination each sample uses (deterministic in the seed)."""
    order = np.random.default_rng([cfg.seed, 1]).permutation(len(files))
    out = []
    for i in range(cfg.samples):
        rng = np.random.default_rng([cfg.seed, 2, i])
        if combos:
            combo = combos[i % len(combos)]
        else:
            combo = sample_combination(rng, int(rng.integers(1, cfg.max_degradations + 1)))
        out.append(
            {
                "index": i,
                "image": files[order[i % len(files)]],
                "combo": combo,
                "seed": cfg.seed * 1_000_003 + i,
            }
        )
    return out
