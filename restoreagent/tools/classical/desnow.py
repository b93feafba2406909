"""Snow removal: flakes are small, compact, whitening blobs; the far snow is a uniform white veil.

Falling snow blends the scene toward white, ``I = J (1 - a) + W a``, with a per-pixel opacity
``a`` (the flakes) on top of a constant one (the veil). Two steps undo it:

1. Flakes. On the whiteness ``m = min(R, G, B)`` (a flake raises every channel, coloured
   texture rarely raises the smallest one), the background is the largest of the openings of
   ``m`` by line segments of ``L`` px in ``orientations`` directions: anything at least ``L`` px
   long in some direction (edges, stripes, lines, large bright areas) survives, compact bright
   blobs narrower than ``L`` in every direction (flakes) do not. Where the excess ``m - bg``
   is above ``thr`` (a soft ramp from ``thr`` to ``2 thr``, dilated by a pixel) the flake's opacity
   is estimated per channel, ``a_c = (I_c - bg_c) / (W - bg_c)`` (the opacity that turns that
   channel's background into the observed value; ``bg_c`` the same opening of channel c), and
   the smallest is kept: a flake whitens every channel alike, a coloured detail does not. That,
   capped at ``amax`` and times ``strength``, is un-blended, ``J = (I - a W) / (1 - a)``: the
   texture under a thin flake is kept, not painted over. Done once per size in ``scales``
   (small flakes first); large scales also catch more scene detail, so their ``strength`` is
   lower.
2. Veil. Dark-channel style: the ``quantile`` of the whiteness over the image, less a prior
   ``dark`` level for the darkest scene points, is the veil's contribution ``v W``; ``omega`` of it
   is removed, ``J = (I - v W) / (1 - v)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ._util import finish
from .derain import line_segment


def compact_background(m: np.ndarray, length: int, orientations: int = 8) -> np.ndarray:
    """Max over ``orientations`` directions of the opening of ``m`` by a ``length`` px segment:
    ``m`` with the bright structures shorter than ``length`` px in every direction removed."""
    out = None
    for i in range(orientations):
        o = cv2.morphologyEx(m, cv2.MORPH_OPEN, line_segment(length, 180.0 * i / orientations), borderType=cv2.BORDER_REFLECT)
        out = o if out is None else np.maximum(out, o)
    return out


def flake_desnow(
    image: np.ndarray,
    scales: Sequence[int] = (5, 9, 13),
    thr: float = 0.05,
    strength: float | Sequence[float] = (0.8, 0.8, 0.4),
    omega: float = 0.85,
    white: float = 0.95,
    amax: float = 0.6,
    orientations: int = 8,
    dark: float = 0.01,
    quantile: float = 0.002,
) -> np.ndarray:
    """Remove snowflakes up to about ``max(scales)`` px across, then ``omega`` of the white veil.

    ``thr``: least whiteness excess (0-1) of a flake over its surroundings; ``strength``: the
    fraction of each flake's estimated opacity that is un-blended, one value or one per scale
    (below 1 spares bright scene details mistaken for flakes, more common at large scales);
    ``white``: the colour snow blends toward; ``amax``: the largest opacity inverted (higher
    amplifies errors); ``omega = 0`` keeps the veil. See the module docstring for the model.
    """
    out = np.asarray(image, np.float32)
    w = np.float32(white)
    dil = np.ones((3, 3), np.uint8)
    strengths = [strength] * len(scales) if np.isscalar(strength) else list(strength)
    if len(strengths) != len(scales):
        raise ValueError(f"strength: one value or one per scale ({len(scales)}), got {strength!r}")
    for length, st in zip(scales, strengths):
        length, n = int(length), int(orientations)
        m = out.min(axis=2)
        excess = m - compact_background(m, length, n)
        mask = cv2.dilate(np.clip((excess - thr) / thr, 0.0, 1.0), dil)
        # Opacity per channel against that channel's own background; a flake whitens every
        # channel alike, so the smallest is the most the pixel can be a flake (coloured details
        # whiten some channels only).
        bg = compact_background(out, length, n)
        a = ((out - bg) / np.maximum(w - bg, 1e-3)).min(axis=2)
        a = (np.clip(a, 0.0, amax) * mask * np.float32(st))[..., None]
        out = (out - a * w) / (1.0 - a)
    if omega > 0:
        q = float(np.quantile(out.min(axis=2), quantile))
        v = min(max(q - dark, 0.0) / max(white - dark, 1e-3) * omega, 0.5)
        out = (out - np.float32(v) * w) / np.float32(1.0 - v)
    return finish(out)
