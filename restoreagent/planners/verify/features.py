"""What the verifier reads about one candidate: the detector's view of its output (what is left to
remove), how far it moved from the input and from the other candidates, and where it came from
(how likely its degradation set is, how the plan scorer rated it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...tasks import TASK_FOR_DEGRADATION, TASKS
from .candidates import Candidate

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
STAT_NAMES = ("luma_mean", "luma_p05", "luma_p50", "luma_p95", "luma_std", "log_hf", "dist_input", "dist_consensus")


def _luma(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32) @ LUMA


def high_freq(y: np.ndarray) -> float:
    """Mean squared Laplacian of the luma: fine texture and noise."""
    lap = 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
    return float(np.mean(lap * lap))


def image_stats(outputs: Sequence[np.ndarray], image: np.ndarray) -> np.ndarray:
    """(K + 1, len(STAT_NAMES)): each output's statistics, the input's in the last row."""
    lumas = [_luma(o) for o in outputs] + [_luma(image)]
    consensus = np.median(np.stack(lumas[:-1]), axis=0) if outputs else lumas[-1]
    rows = []
    for y in lumas:
        p05, p50, p95 = np.percentile(y, [5, 50, 95])
        rows.append([y.mean(), p05, p50, p95, y.std(), np.log(high_freq(y) + 1e-6),
                     float(np.sqrt(np.mean((y - lumas[-1]) ** 2))), float(np.sqrt(np.mean((y - consensus) ** 2)))])
    return np.asarray(rows, np.float32)


NR_NAMES = ("log_noise", "haze_floor", "saturation_mean", "saturation_p95")


def no_reference_stats(outputs: Sequence[np.ndarray], image: np.ndarray) -> np.ndarray:
    """(K + 1, len(NR_NAMES)): no-reference measures of each output and, last, the input: the
    estimated noise level (restoreagent.quality), the dark-channel floor (haze) and colour saturation."""
    from ...quality import haze_level, noise_level

    rows = []
    for y in [*outputs, image]:
        y = np.asarray(y, np.float32)
        sat = y.max(axis=2) - y.min(axis=2)
        rows.append([np.log(noise_level(y) + 0.1), haze_level(y), sat.mean(), np.percentile(sat, 95)])
    return np.asarray(rows, np.float32)


CONSISTENCY_NAMES = ("log_change", "log_change_hf", "change_autocorr_v", "change_autocorr_h", "change_on_edges",
                     "change_on_input_edges", "log_lowpass_change", "blockiness", "log_chroma_change", "log_sharpening",
                     "clipped", "change_hf_share")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def _consistency_one(image: np.ndarray, output: np.ndarray) -> list[float]:
    """What a step removed from the input, read as a consistency check: a good restoration removes
    noise-like, structure-free change (white, not along edges), keeps the input's coarse structure
    up to a tone curve, and leaves no 8 x 8 block edges."""
    import cv2

    li, lo = _luma(image), _luma(output)
    change = lo - li
    hf = change - cv2.GaussianBlur(change, (0, 0), 1.5)

    def log_energy(a):
        return float(np.log(np.mean(a * a) + 1e-7))

    def autocorr(a, axis):
        a = a - a.mean()
        return float((a * np.roll(a, 1, axis=axis)).mean() / (a.var() + 1e-9))

    def grad(y):
        return np.hypot(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1))

    g_out, g_in = grad(lo), grad(li)
    # coarse structure after the best quadratic tone curve: brightening may bend tones, not move edges
    side = (max(4, lo.shape[1] // 4), max(4, lo.shape[0] // 4))
    lp_in = cv2.resize(cv2.GaussianBlur(li, (0, 0), 2.0), side, interpolation=cv2.INTER_AREA).ravel()
    lp_out = cv2.resize(cv2.GaussianBlur(lo, (0, 0), 2.0), side, interpolation=cv2.INTER_AREA).ravel()
    basis = np.stack([np.ones_like(lp_in), lp_in, lp_in * lp_in], 1)
    coef, *_ = np.linalg.lstsq(basis, lp_out, rcond=None)
    lowpass_change = float(np.sqrt(np.mean((basis @ coef - lp_out) ** 2)))
    dh, dv = np.abs(np.diff(lo, axis=1)), np.abs(np.diff(lo, axis=0))
    on_h, on_v = (np.arange(dh.shape[1]) % 8) == 7, (np.arange(dv.shape[0]) % 8) == 7
    block = np.log((dh[:, on_h].mean() + dv[on_v].mean() + 1e-4) / (dh[:, ~on_h].mean() + dv[~on_v].mean() + 1e-4))
    chroma = (np.asarray(output, np.float32) - np.asarray(image, np.float32)) - change[..., None]
    clipped = np.mean((np.asarray(output) <= 1 / 255) | (np.asarray(output) >= 254 / 255))
    return [log_energy(change), log_energy(hf), autocorr(hf, 0), autocorr(hf, 1), _corr(np.abs(hf), g_out),
            _corr(np.abs(hf), g_in), float(np.log(lowpass_change + 1e-5)), float(block), log_energy(chroma),
            float(np.log((g_out.mean() + 1e-4) / (g_in.mean() + 1e-4))), float(clipped),
            float(np.mean(hf * hf) / (np.mean(change * change) + 1e-9))]


def consistency_stats(outputs: Sequence[np.ndarray], image: np.ndarray) -> np.ndarray:
    """(K, len(CONSISTENCY_NAMES)): each output checked against the input (:func:`_consistency_one`).
    Images are float RGB in [0, 1], read as 8-bit (what the verifier's data keeps)."""
    from ...imageio import quantize

    image = quantize(image)
    return np.asarray([_consistency_one(image, quantize(o)) for o in outputs], np.float32).reshape(len(outputs), -1)


def set_onehot(degradations) -> np.ndarray:
    tasks = {TASK_FOR_DEGRADATION[d] for d in degradations}
    return np.array([t in tasks for t in TASKS], np.float32)


def candidate_table(cands: Sequence[Candidate]) -> np.ndarray:
    """(K, 5 + len(TASKS)): set rank, set margin, scorer rank, scorer gap, steps, the set's tasks."""
    return np.asarray([[c.set.rank, c.set.margin, c.scorer_rank, c.scorer_gap, len(c.plan.steps), *set_onehot(c.set.degradations)]
                       for c in cands], np.float32)


def detector_view(detector, image) -> tuple[np.ndarray, np.ndarray]:
    """(presence logits + severities (19,), mean tile embedding) of one image."""
    logits, sev, feats = detector.raw(image)
    return np.concatenate([logits, sev]).astype(np.float32), feats.mean(0).cpu().numpy().astype(np.float32)


def verifier_features(table: np.ndarray, out_raw: np.ndarray, in_raw: np.ndarray, stats: np.ndarray,
                      out_emb: np.ndarray | None = None, in_emb: np.ndarray | None = None,
                      nr: np.ndarray | None = None, consistency: np.ndarray | None = None,
                      dropped: np.ndarray | None = None) -> np.ndarray:
    """(K, D) features of one image's K candidates.

    ``table``: :func:`candidate_table`; ``out_raw`` (K, 19): the detector's presence logits and
    severities of each output; ``in_raw`` (19,): the input's; ``stats``: :func:`image_stats`;
    ``out_emb`` (K, E) and ``in_emb`` (E,), when given: the detector's tile embeddings of the outputs
    and the input (what it sees beyond its named degradations); ``nr``, when given:
    :func:`no_reference_stats`; ``consistency``, when given: :func:`consistency_stats`; ``dropped`` (K,),
    when given: how many last steps of a proposed plan the candidate leaves out (0: proposed itself)."""
    k = len(table)
    s_out, s_in = stats[:k], stats[k]
    rel = s_out - s_in  # how each output moved
    cons = stats[:k, -1:] - np.median(stats[:k, -1:])
    return np.concatenate(
        [
            table[:, :2], np.minimum(table[:, 2:3], 8) / 8, np.clip(table[:, 3:4], -10, 0), table[:, 4:5] / 4, table[:, 5:],
            out_raw, np.broadcast_to(in_raw, (k, in_raw.size)), out_raw[:, :9] - in_raw[None, :9],
            s_out, rel[:, :6], cons,
            *([] if nr is None else [nr[:k], nr[:k] - nr[k]]),
            *([] if consistency is None else [consistency]),
            *([] if dropped is None else [np.asarray(dropped, np.float32).reshape(k, 1)]),
            *([] if out_emb is None else [out_emb, out_emb - in_emb[None]]),
        ],
        axis=1,
    ).astype(np.float32)
