"""Dehazing with the dark channel prior (He, Sun & Tang 2009): atmospheric light from the
haziest pixels, transmission from the dark channel, refined by a guided filter."""

from __future__ import annotations

import cv2
import numpy as np

from ._util import finish, guided_filter, luma


def _patch(shape, patch: int | None) -> int:
    if patch:
        return int(patch) | 1
    return int(np.clip(round(min(shape[:2]) / 40), 3, 15)) | 1


def dark_channel(img: np.ndarray, patch: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(img.min(axis=2), k, borderType=cv2.BORDER_REFLECT)


def atmospheric_light(img: np.ndarray, dark: np.ndarray, top: float = 0.001) -> np.ndarray:
    """Mean colour of the pixels with the brightest dark channel (the top ``top`` fraction)."""
    n = max(1, int(dark.size * top))
    idx = np.argpartition(dark.ravel(), -n)[-n:]
    return img.reshape(-1, 3)[idx].mean(axis=0)


def dcp_estimate(image: np.ndarray, patch: int | None = None, **_) -> dict:
    """The patch size and atmospheric light (A) :func:`dcp_dehaze` uses for ``image``."""
    p = _patch(image.shape, patch)
    a = np.maximum(atmospheric_light(image, dark_channel(image, p)), 0.05)
    return {"patch": p, "airlight": tuple(float(c) for c in a)}


def dcp_dehaze(
    image: np.ndarray,
    omega: float = 0.95,
    t0: float = 0.1,
    patch: int | None = None,
    eps: float = 1e-3,
    airlight: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Invert I = J t + A (1 - t): ``omega`` keeps that much of the estimated haze (lower for
    light haze), ``t0`` bounds the transmission from below (higher is gentler). ``patch`` and
    ``airlight`` (A) fix what is otherwise estimated from the image (:func:`dcp_estimate`; the
    tiling of large photos estimates them once on the whole photo)."""
    if airlight is None or patch is None:
        est = dcp_estimate(image, patch)
        patch, airlight = est["patch"], est["airlight"]
    p = int(patch)
    a = np.asarray(airlight, dtype=np.float32)
    t = 1.0 - omega * dark_channel(image / a, p)
    t = guided_filter(luma(image), t.astype(np.float32), 4 * p, eps)
    t = np.maximum(t, t0)[..., None]
    return finish((image - a) / t + a)
