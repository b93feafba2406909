"""A deterministic depth proxy for synthetic haze (no depth network runs offline).

``depth_proxy(image)`` returns a smooth map ``d`` in ``[NEAR, 1]`` (1 = far) made of two cues:

1. A vertical ramp, top = far, bottom = near (weight ``RAMP_WEIGHT`` = 0.7). In most photos
   the ground plane recedes upwards towards the horizon and the sky, so "higher in the frame is
   farther away" is the strongest single monocular depth cue there is.
2. A heavily smoothed "bright and colourless" cue, ``luma * (1 - saturation)`` (weight 0.3).
   Sky and distant objects are bright and desaturated (the same observation, reversed, that the
   dark-channel prior uses to estimate haze), while near objects are usually darker or more
   saturated. The cue is computed on a copy whose short side is 64 px and blurred with a
   Gaussian of sigma = 1/8 of that short side, so it follows large regions only: it never
   invents depth edges from texture, which would make haze look like a pattern printed on the
   image.

The mix is mapped to ``[NEAR, 1]`` with ``NEAR = 0.2``: the nearest visible point of a photo
is not at zero distance, so even the bottom of the frame gets a little haze
(``t = exp(-beta * 0.2)``, 0.70 to 0.89 over the beta range), and haze visibly increases with
distance up the frame.
"""

from __future__ import annotations

import cv2
import numpy as np

RAMP_WEIGHT = 0.7
NEAR = 0.2
_SMALL_SIDE = 64


def depth_proxy(image: np.ndarray) -> np.ndarray:
    """Depth proxy ``d`` (H, W) float32 in [NEAR, 1], 1 = far. Deterministic, depends on the image."""
    h, w = image.shape[:2]
    ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None]  # top far, bottom near

    f = _SMALL_SIDE / min(h, w)
    if f < 1.0:
        small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    else:
        small = image
    mx = small.max(axis=2)
    mn = small.min(axis=2)
    sat = (mx - mn) / np.maximum(mx, 1e-3)
    luma = small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    cue = luma * (1.0 - sat)
    sigma = min(small.shape[:2]) / 8.0
    cue = cv2.GaussianBlur(cue, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    if cue.shape != (h, w):
        cue = cv2.resize(cue, (w, h), interpolation=cv2.INTER_LINEAR)

    mix = RAMP_WEIGHT * ramp + (1.0 - RAMP_WEIGHT) * np.clip(cue, 0.0, 1.0)
    return (NEAR + (1.0 - NEAR) * mix).astype(np.float32)
