"""Full-reference scores (through pyiqa) and RestoreAgent's "balanced" score.

PSNR and SSIM always run offline. LPIPS and DISTS join automatically when their weight files
are already in the torch hub cache (pyiqa would otherwise try to download them); they are
never required. The balanced score of a candidate is the sum over metrics of its z-score among
the candidates of the same image, with lower-is-better metrics negated.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UnknownNameError


@dataclass(frozen=True)
class MetricSpec:
    name: str
    pyiqa_name: str
    higher_is_better: bool
    weight_files: tuple[str, ...] = ()  # relative to torch.hub.get_dir()


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("psnr", "psnr", True),
        MetricSpec("ssim", "ssim", True),
        MetricSpec("lpips", "lpips", False, ("pyiqa/LPIPS_v0.1_alex-df73285e.pth", "checkpoints/alexnet-owt-7be5be79.pth")),
        MetricSpec("dists", "dists", False, ("pyiqa/DISTS_weights-f5e65c96.pth", "checkpoints/vgg16-397923af.pth")),
    )
}
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "dists")


def metric_available(name: str) -> bool:
    import torch.hub

    spec = METRICS[name]
    return all((Path(torch.hub.get_dir()) / f).exists() for f in spec.weight_files)


def resolve_metrics(names=None) -> tuple[str, ...]:
    """The metrics to use: the requested ones, dropping weight-hungry ones whose weights are absent."""
    names = DEFAULT_METRICS if names in (None, "auto") else tuple(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UnknownNameError(f"unknown metric {unknown[0]!r}; metrics: {', '.join(METRICS)}")
    return tuple(n for n in names if metric_available(n))


@functools.cache
def _pyiqa_metric(name: str):
    try:
        import pyiqa
    except ImportError as e:  # pragma: no cover - install problem
        raise UnknownNameError("scoring needs pyiqa: run scripts/setup.sh (installs it with --no-deps)") from e
    return pyiqa.create_metric(METRICS[name].pyiqa_name, device="cpu", as_loss=False)


def _to_tensor(image: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()


class Scorer:
    """Computes the chosen full-reference metrics of an image against its clean reference."""

    def __init__(self, metrics=None):
        self.metrics = resolve_metrics(metrics)
        if not self.metrics:
            raise UnknownNameError("no metric is available (psnr and ssim need only pyiqa)")

    def __call__(self, image: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        import torch

        x, ref = _to_tensor(image), _to_tensor(reference)
        with torch.inference_mode():
            return {m: float(_pyiqa_metric(m)(x, ref).item()) for m in self.metrics}


@dataclass(frozen=True)
class ZStats:
    """Per-metric mean and std over one image's candidates: the frame of its balanced scores."""

    mean: dict[str, float]
    std: dict[str, float]

    @classmethod
    def of(cls, rows: list[dict[str, float]], metrics) -> ZStats:
        mean = {m: float(np.mean([r[m] for r in rows])) for m in metrics}
        std = {m: float(np.std([r[m] for r in rows])) for m in metrics}
        return cls(mean, std)

    def balanced(self, row: dict[str, float]) -> float:
        total = 0.0
        for m, mu in self.mean.items():
            sd = self.std[m]
            if sd > 1e-12:  # a metric on which every candidate ties carries no information
                z = (row[m] - mu) / sd
                total += z if METRICS[m].higher_is_better else -z
        return total


def balanced_scores(rows: list[dict[str, float]], metrics) -> list[float]:
    """RestoreAgent's balanced score of every candidate (higher is better)."""
    stats = ZStats.of(rows, metrics)
    return [stats.balanced(r) for r in rows]


def ranking_percent(score: float, candidate_scores) -> float:
    """Percent of candidates that score strictly better than ``score`` (0 = best possible)."""
    arr = np.asarray(candidate_scores, dtype=np.float64)
    return 100.0 * float(np.sum(arr > score + 1e-9)) / len(arr)
