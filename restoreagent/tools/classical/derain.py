"""Rain-streak removal: streaks are thin, bright and share one orientation. Their direction is
found from the structure tensor of the bright thin residual; a morphological opening with a
short segment across that direction gives a rain-free background; the residual, stronger along
the direction than across it (long streaks, not texture), decides where the rain is removed."""

from __future__ import annotations

import cv2
import numpy as np

from ._util import finish, line_psf, luma


def line_segment(length: int, angle_deg: float) -> np.ndarray:
    """Binary line structuring element of ``length`` px at ``angle_deg`` (90 = vertical)."""
    k = line_psf(length, angle_deg)
    return (k >= 0.5 * k.max()).astype(np.uint8)


def rain_angle(y: np.ndarray) -> float:
    """Dominant orientation (degrees counter-clockwise from horizontal, 90 = vertical) of the
    thin bright structures in luma ``y``."""
    ell = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    top = y - cv2.morphologyEx(y, cv2.MORPH_OPEN, ell, borderType=cv2.BORDER_REFLECT)
    gx = cv2.Sobel(top, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(top, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    # Mean gradient orientation (image rows grow downwards); the streaks run across it.
    theta_grad = 0.5 * np.arctan2(2 * jxy, jxx - jyy)
    return float(np.rad2deg(-theta_grad) + 90.0) % 180.0


def streak_derain(
    image: np.ndarray,
    width: int = 5,
    length: int = 15,
    thr: float = 0.02,
    smooth: int = 9,
    angle: float | None = None,
) -> np.ndarray:
    """Remove bright streaks up to about ``width - 2`` px wide.

    ``thr`` is the least excess brightness (0-1) of a streak, averaged over ``length`` px
    along it, over the same average across it. The excess removed is capped by its own average
    over ``smooth`` px along the streak: constant along a streak, varying in texture.
    ``angle`` (degrees, 90 = vertical) fixes the rain direction instead of estimating it.
    """
    y = luma(image)
    a = rain_angle(y) if angle is None else float(angle)
    bg = cv2.morphologyEx(image, cv2.MORPH_OPEN, line_segment(width, a + 90.0), borderType=cv2.BORDER_REFLECT)
    resid = np.maximum(y - luma(bg), 0.0)
    along = cv2.filter2D(resid, -1, line_psf(length, a), borderType=cv2.BORDER_REFLECT)
    across = cv2.filter2D(resid, -1, line_psf(length, a + 90.0), borderType=cv2.BORDER_REFLECT)
    mask = np.clip((along - across - thr) / thr, 0.0, 1.0)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    mask = cv2.GaussianBlur(mask, (0, 0), 0.7)[..., None]
    excess = image - bg
    if smooth > 1:
        avg = cv2.filter2D(excess, -1, line_psf(smooth, a), borderType=cv2.BORDER_REFLECT)
        excess = np.minimum(excess, np.maximum(avg, 0.0))
    return finish(image - mask * excess)
