"""Blending candidates with the fusion network, and ``--fuse K``: run a plan's K candidates, blend them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..plan import Plan, Step
from .candidates import candidate_plans, run_plans
from .mix import combine, load_mix_head, mix_for_tasks, set_stats
from .model import FusionNet
from .weights import load_fusion, weights_for_tasks

TILE = 512  # px: large images are blended tile by tile (memory), each tile seen with a margin
MARGIN = 48  # px of context around a tile; only its inner part is kept, so tiles agree at the seams
CONTEXT_WHOLE = 768 * 768  # px: up to this size the image-level context sees the whole image at once
CONTEXT_GRID, CONTEXT_WINDOW = 4, 256  # larger: an even 4 x 4 grid of 256 px windows (pixel scale kept)


def _context(model: FusionNet, cand: torch.Tensor, deg: torch.Tensor) -> torch.Tensor:
    """The network's image-level context of the whole image (once, shared by every tile)."""
    h, w = deg.shape[-2:]
    if h * w <= CONTEXT_WHOLE:
        return model.context(cand, deg)
    ys = sorted({round(i * (h - min(h, CONTEXT_WINDOW)) / (CONTEXT_GRID - 1)) for i in range(CONTEXT_GRID)})
    xs = sorted({round(i * (w - min(w, CONTEXT_WINDOW)) / (CONTEXT_GRID - 1)) for i in range(CONTEXT_GRID)})
    return model.context_from_moments([
        model.context_moments(cand[..., y:y + CONTEXT_WINDOW, x:x + CONTEXT_WINDOW], deg[..., y:y + CONTEXT_WINDOW, x:x + CONTEXT_WINDOW])
        for y in ys for x in xs])


def fusion_weights(candidates: Sequence[np.ndarray], degraded: np.ndarray, model: FusionNet | None = None,
                   tile: int = TILE, prefer: int | None = None) -> np.ndarray:
    """Per-pixel weights (K, H, W) of ``candidates`` (each (H, W, 3) float in [0, 1]): >= 0, summing to 1.

    ``prefer``: the index of a candidate to fall back on when in doubt (the network's ``prior``);
    None (what ``run --fuse`` uses): no candidate is marked."""
    if not candidates:
        raise ValueError("fusion needs at least one candidate")
    shapes = {c.shape for c in candidates} | {degraded.shape}
    if len(shapes) != 1:
        raise ValueError(f"candidates and the degraded image must have one shape, got {sorted(shapes)}")
    model = model or load_fusion()
    h, w = degraded.shape[:2]
    cand = torch.from_numpy(np.stack(candidates).astype(np.float32)).permute(0, 3, 1, 2)[None]
    deg = torch.from_numpy(np.ascontiguousarray(degraded, np.float32)).permute(2, 0, 1)[None]
    out = np.empty((len(candidates), h, w), np.float32)
    prior = None
    if prefer is not None:
        prior = torch.zeros(1, len(candidates))
        prior[0, prefer] = 1.0
    with torch.inference_mode():
        context = _context(model, cand, deg)
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                y0, x0 = max(0, y - MARGIN), max(0, x - MARGIN)
                y1, x1 = min(h, y + tile + MARGIN), min(w, x + tile + MARGIN)
                _, wt = model(cand[..., y0:y1, x0:x1], deg[..., y0:y1, x0:x1], prior, context)
                ty, tx = min(tile, h - y), min(tile, w - x)
                out[:, y:y + ty, x:x + tx] = wt[0, :, y - y0:y - y0 + ty, x - x0:x - x0 + tx].numpy()
    return out


def blend(candidates: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """sum_k weights[k] * candidates[k]: a convex combination at every pixel."""
    return np.einsum("khw,khwc->hwc", weights, np.stack(candidates).astype(np.float32)).astype(np.float32)


def fuse(candidates: Sequence[np.ndarray], degraded: np.ndarray, model: FusionNet | None = None,
         prefer: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fused image (H, W, 3), weights (K, H, W)) for K candidate restorations of ``degraded``
    (``prefer``: the candidate to fall back on, e.g. the plan's; see :func:`fusion_weights`)."""
    weights = fusion_weights(candidates, degraded, model, prefer=prefer)
    return np.clip(blend(candidates, weights), 0.0, 1.0), weights


def plan_weights(outputs: Sequence[np.ndarray], image: np.ndarray, plans: Sequence[Plan], model: FusionNet | None = None,
                 mix: bool = True) -> tuple[np.ndarray, dict]:
    """Per-pixel weights (K, H, W) of the candidates ``outputs`` of ``plans`` (the plan first), as
    ``run --fuse`` blends them, and the files used ({"weights": ..., "mix": ...}): the network
    (``model``, else the task set's specialist or the general one) and, with ``mix``, the task set's
    whole-photo mix head when one is shipped and was trained on every tool of ``plans``."""
    files, logits, scale = {}, None, 1.0
    mix_file = mix_for_tasks(plans[0].tasks) if mix else None
    if mix_file is not None:
        head, tasks = load_mix_head(mix_file)
        if unknown := head.unknown_tools(plans):  # e.g. another brightener: the network alone
            files["mix_skipped"] = f"{mix_file.name} was not trained on {', '.join(unknown)}"
        else:
            logits = head.set_logits(set_stats(outputs, image, plans, tasks, detector=head.n_detector > 0))
            scale, files["mix"] = float(head.pixel_scale), mix_file.name
    if logits is not None and scale == 0:  # the head alone: one weight per candidate, the network not needed
        h, w = image.shape[:2]
        return np.ascontiguousarray(np.broadcast_to(combine(logits, None, 0.0), (len(outputs), h, w))), files
    if model is None:
        path = weights_for_tasks(plans[0].tasks)
        model, files["weights"] = load_fusion(path), path.name
    weights = fusion_weights(outputs, image, model)
    return (weights if logits is None else combine(logits, weights, scale)), files


def fuse_plan(image: np.ndarray, plan: Plan, k: int, model: FusionNet | None = None,
              on_step: Callable[[Step], None] | None = None, mix: bool = True) -> tuple[np.ndarray, dict]:
    """Run ``plan`` and its complementary variants (:func:`candidate_plans`, K in all), blend them:
    (image, report). ``model``: by default the shipped specialist for the plan's task set, else the
    general network (:func:`~restoreagent.fusion.weights.weights_for_tasks`). No candidate is marked
    (``prefer``): the shipped weights blend better unmarked (docs/fusion.md). ``mix``: when a
    whole-photo mix head is shipped for the plan's task set (:mod:`.mix`), it sets each candidate's
    share of the photo and the network's per-pixel logits (times the head's ``pixel_scale``) where it goes.

    The report lists the candidate plans and each one's mean weight (how much of the result it made).
    """
    t0 = time.perf_counter()
    plans = candidate_plans(plan, k)
    outputs = run_plans(image, plans, on_step=on_step)
    if len(plans) == 1:  # nothing to blend (a plan without alternatives, or k = 1)
        return outputs[0], {"fused": False, "candidates": [p.text() for p in plans], "seconds": time.perf_counter() - t0}
    weights, files = plan_weights(outputs, image, plans, model, mix)
    fused = np.clip(blend(outputs, weights), 0.0, 1.0)
    return fused, {
        "fused": True,
        "plan": plan.to_json(),
        **files,
        "candidates": [{"plan": p.text(), "mean_weight": round(float(w.mean()), 4)} for p, w in zip(plans, weights, strict=True)],
        "seconds": round(time.perf_counter() - t0, 4),
    }
