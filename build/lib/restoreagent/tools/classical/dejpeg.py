"""JPEG artefact removal: shift-averaged 8x8 DCT shrinkage with thresholds proportional to the
JPEG luma quantisation table of an assumed quality (re-application of JPEG at every grid shift),
and luma-guided filtering of the chroma planes that 4:2:0 JPEG codes at half resolution."""

from __future__ import annotations

import numpy as np

from ._util import finish, guided_filter, rgb_to_ycc, sliding_dct, ycc_to_rgb

# ITU T.81 Annex K tables.
LUMA_Q = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float32,
)
CHROMA_Q = np.full((8, 8), 99, np.float32)
CHROMA_Q[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def qtable(base: np.ndarray, quality: float) -> np.ndarray:
    """IJG scaling of a base table to a quality in [1, 100]; returned on the 0-1 pixel scale."""
    q = float(np.clip(quality, 1, 100))
    scale = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    t = np.clip(np.floor((base * scale + 50.0) / 100.0), 1, 255)
    return (t / 255.0).astype(np.float32)


def dct_dejpeg(
    image: np.ndarray,
    quality: float = 20.0,
    thr: float = 0.35,
    chroma_radius: int = 4,
    chroma_eps: float = 1e-3,
    step: int = 2,
) -> np.ndarray:
    """Remove blocking and ringing of JPEG at about ``quality``.

    Luma: coefficients below ``thr`` x the quantisation step are dropped at every 8x8 grid shift
    (step ``step``) and the results averaged. Chroma (blocky and blurred by 4:2:0 subsampling):
    guided filter with the cleaned luma as guide, which restores chroma edges where luma has them.
    """
    ycc = rgb_to_ycc(image)
    y = sliding_dct(ycc[..., :1], thr, step, qtable=qtable(LUMA_Q, quality))
    c = guided_filter(y[..., 0], ycc[..., 1:], chroma_radius, chroma_eps)
    return finish(ycc_to_rgb(np.concatenate([y, c], axis=2)))
