"""Bounded memory for the classical tools on large photos: overlapping tiles, whole-photo estimates.

A classical tool holds several float copies of the image at once (the sliding DCT denoiser about
40 bytes per pixel and channel), so a 63-megapixel photo took 10 GB in one call. Above
``RESTOREAGENT_CLASSICAL_TILE`` pixels on a side (default 2016; 0 turns it off) the registry runs a
classical tool tile by tile (:func:`run_tiled`): tiles of that size, overlapping by
:data:`OVERLAP` pixels, blended with linear ramps, so peak memory is bounded by the tile size
whatever the photo's. Learned tools tile in their own runner (``RESTOREAGENT_TILE``).

What a tool estimates from the whole image (the noise level of the DCT denoiser, the white point
and curve of the gamma brightener, the patch size and atmospheric light of the dehazer, the rain
direction, the motion blur and the defocus radius) is estimated once on the whole photo and
passed to every tile (:data:`WHOLE_IMAGE_ESTIMATES`), so that the tiles agree.

Tile starts are multiples of 48 pixels, so that a JPEG's 8x8 (and chroma-subsampled 16x16) block
grid lines up in every tile, as the deJPEG tool expects, and so does the x2/x3/x4 sampling grid of
the back-projection super-resolution.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

DEFAULT_TILE = 2016  # 42 x 48: tiles hold whole JPEG blocks and whole super-resolution cells
OVERLAP = 64
ALIGN = 48  # a multiple of 16 (JPEG blocks) and of 2, 3 and 4 (super-resolution grids)


def classical_tile() -> int:
    raw = os.environ.get("RESTOREAGENT_CLASSICAL_TILE", str(DEFAULT_TILE))
    try:
        tile = int(raw)
    except ValueError:
        tile = -1
    if tile != 0 and tile <= 2 * OVERLAP:
        from ..errors import RestoreAgentError

        raise RestoreAgentError(
            f"RESTOREAGENT_CLASSICAL_TILE={raw!r}: give 0 (no tiling) or a tile side above {2 * OVERLAP} pixels"
        )
    return tile


def _estimate_noise_sigma(image, sigma=None, sigma_min=5.0, sigma_max=50.0, **_) -> dict:
    from .classical._util import estimate_noise

    if sigma is not None:
        return {}
    return {"sigma": float(np.clip(estimate_noise(image) * 255.0, sigma_min, sigma_max))}


def _estimate_motion(image, blur=None, lmin=3.0, lmax=30.0, min_ratio=0.0, **_) -> dict:
    from .classical.deblur import estimate_motion

    if blur is not None:
        return {}
    return {"blur": estimate_motion(image, lmin, lmax, min_ratio) or (0.0, 0.0)}


def _estimate_radius(image, radius=None, rmin=1.0, rmax=2.5, **_) -> dict:
    from .classical.deblur import estimate_defocus

    return {} if radius is not None else {"radius": estimate_defocus(image, rmin, rmax)}


def _estimate_rain_angle(image, angle=None, **_) -> dict:
    from .classical._util import luma
    from .classical.derain import rain_angle

    return {} if angle is not None else {"angle": rain_angle(luma(image))}


def _gamma_curve(image, **params) -> dict:
    from .classical.brighten import gamma_curve

    return gamma_curve(image, **params)


def _dcp_estimate(image, **params) -> dict:
    from .classical.dehaze import dcp_estimate

    return dcp_estimate(image, **params)


# a tool function (catalogue ref) -> what to estimate on the whole photo, as keyword arguments
WHOLE_IMAGE_ESTIMATES: dict[str, Callable[..., dict]] = {
    "restoreagent.tools.classical:dct_denoise": _estimate_noise_sigma,
    "restoreagent.tools.classical:defocus_deblur": _estimate_radius,
    "restoreagent.tools.classical:motion_deblur": _estimate_motion,
    "restoreagent.tools.classical:streak_derain": _estimate_rain_angle,
    "restoreagent.tools.classical:gamma_brighten": _gamma_curve,
    "restoreagent.tools.classical:dcp_dehaze": _dcp_estimate,
}


def tile_spans(length: int, tile: int, overlap: int, align: int = ALIGN) -> list[tuple[int, int]]:
    """``(start, end)`` of tiles at most ``tile`` long covering ``[0, length)``: every start a
    multiple of ``align``, each tile overlapping the next by at least ``overlap`` (the last one is
    cut short at ``length``)."""
    tile = max(align, tile // align * align)  # whole blocks and cells in every tile but the last
    stride = max(align, (tile - overlap) // align * align)
    spans, start = [], 0
    while True:
        end = min(start + tile, length)
        spans.append((start, end))
        if end >= length:
            return spans
        start += stride


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    w = np.ones(length, np.float32)
    r = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    if not at_start:
        w[:overlap] = r
    if not at_end:
        w[-overlap:] = np.minimum(w[-overlap:], r[::-1])
    return w


def needs_tiling(shape, tile: int) -> bool:
    return bool(tile) and max(shape[:2]) > tile


def run_tiled(fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, tile: int, overlap: int = OVERLAP) -> np.ndarray:
    """``fn`` applied tile by tile; tiles blended with linear ramps over their overlap."""
    h, w = image.shape[:2]
    out = np.zeros_like(image, dtype=np.float32)
    weight = np.zeros((h, w, 1), np.float32)
    for y0, y1 in tile_spans(h, tile, overlap):
        for x0, x1 in tile_spans(w, tile, overlap):
            part = fn(np.ascontiguousarray(image[y0:y1, x0:x1]))
            wy = _ramp(y1 - y0, overlap, y0 == 0, y1 == h)
            wx = _ramp(x1 - x0, overlap, x0 == 0, x1 == w)
            wgt = (wy[:, None] * wx[None, :])[..., None]
            out[y0:y1, x0:x1] += part * wgt
            weight[y0:y1, x0:x1] += wgt
            del part
    out /= weight
    return out
