"""Calibrated probabilities and per-degradation thresholds, fitted on validation samples.

Per label, Platt scaling ``p = sigmoid(a * logit + b)`` (fitted by minimising the BCE on the
validation logits), then the threshold on ``p`` that maximises that label's accuracy on the
same samples. The exact-set accuracy is what the thresholds are judged by: every label right.
"""

from __future__ import annotations

import numpy as np
import torch


def fit_platt(logits: np.ndarray, targets: np.ndarray, iters: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (a, b) of Platt scaling."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(targets, dtype=torch.float64)
    a = torch.ones(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], lr=0.5, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z * a + b, y)
        loss.backward()
        return loss

    opt.step(closure)
    return a.detach().numpy(), b.detach().numpy()


def calibrate(logits: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(logits * a + b)))


def fit_thresholds(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-column threshold maximising accuracy (ties: the one nearest 0.5)."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    out = np.empty(probs.shape[1])
    for j in range(probs.shape[1]):
        acc = np.array([((probs[:, j] >= t) == (targets[:, j] > 0.5)).mean() for t in grid])
        best = np.flatnonzero(acc >= acc.max() - 1e-12)
        out[j] = grid[best[np.argmin(np.abs(grid[best] - 0.5))]]
    return out


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 10) -> float:
    """ECE over all labels together (probabilities vs frequencies in equal-width bins)."""
    p, y = probs.ravel(), targets.ravel()
    edges = np.linspace(0, 1, bins + 1)
    err = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (p >= lo) & (p < hi) if hi < 1 else (p >= lo) & (p <= hi)
        if m.any():
            err += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(err)
