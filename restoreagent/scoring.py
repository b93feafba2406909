"""Full-reference scores (through pyiqa) and RestoreAgent's "balanced" score.

PSNR and SSIM always run offline. LPIPS and DISTS join automatically when their weight files
are already in the torch hub cache (pyiqa would otherwise try to download them); they are
never required. The balanced score of a candidate is the sum over metrics of its z-score among
the candidates of the same image, with lower-is-better metrics negated.

PSNR and SSIM are computed by this module's own implementation of pyiqa's definitions (same
colour conversion, rounding and Gaussian window, float64 filtering), because the exhaustive
search scores thousands of images against one reference: the 11x11 window is applied as two
1-D passes and the reference's statistics are computed once, which makes SSIM about 10x faster
than ``pyiqa.create_metric("ssim")`` while agreeing with it to 1e-6 (tested).
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


def to_tensor(image: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()


@functools.cache
def _gauss_1d():
    """The 1-D factor of pyiqa's SSIM window (fspecial(11, 1.5)), float64."""
    import torch

    x = np.arange(11, dtype=np.float64) - 5.0
    g = np.exp(-(x * x) / (2.0 * 1.5 * 1.5))
    return torch.from_numpy(g / g.sum())


def _filter_valid(x):
    """Gaussian 'valid' filtering of (N, C, H, W) float64 as two separable passes."""
    from torch.nn import functional as F

    g = _gauss_1d()
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, 11).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 11, 1).repeat(c, 1, 1, 1), groups=c)


def _luma255(t):
    """pyiqa's SSIM input: the YIQ luma in [0, 255], rounded like MATLAB, as float64."""
    import torch
    from pyiqa.utils.color_util import to_y_channel

    return to_y_channel(t, 255.0, "yiq").to(torch.float64)


class _Reference:
    """A clean reference with the statistics every candidate's SSIM reuses."""

    def __init__(self, reference: np.ndarray):
        import torch

        self.array = reference.copy()  # compared by value: a caller may reuse its buffer
        self.tensor = to_tensor(reference)
        y = _luma255(self.tensor)
        self.y = y
        stats = _filter_valid(torch.cat([y, y * y], dim=1))
        self.mu, self.sq = stats[:, :1], stats[:, 1:]


def fast_psnr(x, ref) -> float:
    """pyiqa's ``psnr`` (RGB, data range 1, eps 1e-8)."""
    import torch

    mse = torch.mean((x - ref) ** 2)
    return float(10 * torch.log10(1.0 / (mse + 1e-8)))


def fast_ssim(x, ref: _Reference) -> float:
    """pyiqa's ``ssim`` (luma, 11x11 Gaussian window with sigma 1.5, 'valid', data range 255)."""
    import torch

    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    y = _luma255(x)
    stats = _filter_valid(torch.cat([y, y * y, y * ref.y], dim=1))
    mu1, mu2 = stats[:, :1], ref.mu
    s1 = stats[:, 1:2] - mu1 * mu1
    s2 = ref.sq - mu2 * mu2
    s12 = stats[:, 2:3] - mu1 * mu2
    cs = torch.relu((2 * s12 + C2) / (s1 + s2 + C2))
    return float((((2 * mu1 * mu2 + C1) / (mu1 * mu1 + mu2 * mu2 + C1)) * cs).mean())


_FAST = {"psnr": lambda x, r: fast_psnr(x, r.tensor), "ssim": fast_ssim}


class Scorer:
    """Computes the chosen full-reference metrics of an image against its clean reference.

    The last reference's statistics are kept, so scoring many images against one reference (the
    search) computes them once. ``fast=False`` calls pyiqa for every metric (the definition).
    """

    def __init__(self, metrics=None, fast: bool = True):
        self.metrics = resolve_metrics(metrics)
        if not self.metrics:
            raise UnknownNameError("no metric is available (psnr and ssim need only pyiqa)")
        self.fast = fast
        self._ref: _Reference | None = None

    def _reference(self, reference: np.ndarray) -> _Reference:
        r = self._ref
        if r is None or r.array.shape != reference.shape or not np.array_equal(r.array, reference):
            self._ref = _Reference(reference)
        return self._ref

    def __call__(self, image: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        import torch

        if image.shape != reference.shape:
            raise ValueError(f"cannot score an image of shape {image.shape} against a reference of shape {reference.shape}")
        with torch.inference_mode():
            ref = self._reference(reference)
            x = to_tensor(image)
            out = {}
            for m in self.metrics:
                if self.fast and m in _FAST:
                    out[m] = _FAST[m](x, ref)
                else:
                    out[m] = float(_pyiqa_metric(m)(x, ref.tensor).item())
            return out


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
