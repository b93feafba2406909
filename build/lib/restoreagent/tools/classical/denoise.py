"""Denoising: shift-averaged 8x8 DCT shrinkage (hard threshold, then empirical Wiener) in an
orthonormal opponent colour space, with the noise level estimated and clamped to the range the
variant is made for."""

from __future__ import annotations

import numpy as np

from ._util import estimate_noise, finish, opp_to_rgb, rgb_to_opp, sliding_dct


def dct_denoise(
    image: np.ndarray,
    sigma_min: float = 5.0,
    sigma_max: float = 50.0,
    sigma: float | None = None,
    thr: float = 2.7,
    step: int = 2,
) -> np.ndarray:
    """Denoise Gaussian noise. ``sigma`` (0-255 scale) fixes the level; otherwise it is estimated
    from the image and clamped to [sigma_min, sigma_max], the range the variant is tuned for."""
    s = sigma if sigma is not None else float(np.clip(estimate_noise(image) * 255.0, sigma_min, sigma_max))
    s /= 255.0
    o = rgb_to_opp(image)
    pilot = sliding_dct(o, thr * s, step)
    out = sliding_dct(o, None, step, pilot=pilot, sigma=s)
    return finish(opp_to_rgb(out))


def bm3d_denoise(
    image: np.ndarray, sigma_min: float = 5.0, sigma_max: float = 50.0, sigma: float | None = None
) -> np.ndarray:
    """BM3D (Dabov et al. 2007, the ``bm3d`` package) on RGB, noise level as in ``dct_denoise``.
    About 0.9 dB better than ``dct_denoise`` but some 30 times slower (about 20 s at 512x512)."""
    import bm3d

    s = sigma if sigma is not None else float(np.clip(estimate_noise(image) * 255.0, sigma_min, sigma_max))
    return finish(bm3d.bm3d_rgb(image.astype(np.float64), s / 255.0))
