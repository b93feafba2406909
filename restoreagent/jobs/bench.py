"""The ``bench`` job: its settings, defaults and help texts.

Run: ``restoreagent bench ...`` (flags generated from :class:`BenchConfig`) or
``restoreagent job bench --config FILE key=value``. Small: ``configs/smoke/bench.yaml``.
The logic: :mod:`restoreagent.bench`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option

BENCH_PLANNERS_HELP = (
    "comma list of random, fixed, oracle, vlm (one-shot) and vlm_stepwise (the VLM re-planning after every step "
    "with rollback, as `run --auto --stepwise`); vlm@FOLDER or vlm_stepwise@FOLDER for a planner saved elsewhere"
)


@dataclass
class BenchConfig:
    """Rank each planner's pipeline among all pipelines of the exhaustive search (RestoreAgent's ranking)."""

    images: str = option(help="folder of clean images: a dev split (cbsd68), never train photos")
    out: str = option(help="output folder (results.json, results.md, cached searches)")
    samples: int = option(50, "samples measured (image x combination)")
    seed: int = option(0, "seed of the images, combinations and degradations")
    planners: tuple[str, ...] = option(("random", "fixed", "oracle"), BENCH_PLANNERS_HELP)
    combos_file: str | None = option(None, "one combination per line, e.g. 'noise + jpeg' (cycled); default: 1 to "
                                     "max_degradations random degradations", flags=("--combos", "--combos-file"), metavar="FILE")
    crop: int | None = option(128, "centre crop size (0: the whole image)", metavar="PX")
    metrics: tuple[str, ...] | None = option(None, "comma list of psnr,ssim,lpips,dists (auto: psnr, ssim + lpips, dists "
                                             "when their weights are present)", none_word="auto")
    max_degradations: int = option(4, "most random degradations per sample (without combos_file)", metavar="K")

    def __post_init__(self):
        if isinstance(self.planners, str):
            self.planners = tuple(p.strip() for p in self.planners.split(",") if p.strip())
        if not self.crop:
            self.crop = None
