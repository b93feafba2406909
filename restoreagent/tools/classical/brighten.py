"""Low-light enhancement: illumination-map (LIME-style) enhancement and a global
percentile-plus-gamma tone curve."""

from __future__ import annotations

import numpy as np

from ._util import finish, guided_filter


def lime_brighten(
    image: np.ndarray,
    gamma: float = 0.8,
    radius: int | None = None,
    eps: float = 1e-3,
    floor: float = 0.02,
) -> np.ndarray:
    """LIME (Guo et al. 2017) with a guided-filter illumination: T = smooth(max_c I), J = I / T^gamma.
    Smaller ``gamma`` brightens less."""
    lum = image.max(axis=2)
    r = radius or max(2, round(min(image.shape[:2]) / 32))
    t = np.clip(guided_filter(lum, lum, r, eps), floor, 1.0)
    return finish(image / (t**gamma)[..., None])


def gamma_brighten(
    image: np.ndarray,
    gamma: float | None = 2.0,
    white: float = 99.9,
    target: float = 0.5,
    gamma_min: float = 1.0,
    gamma_max: float = 3.5,
    white_point: float | None = None,
    exponent: float | None = None,
) -> np.ndarray:
    """Global tone curve on the HSV value V = max(R, G, B), hue and saturation kept:
    V' = (V / w)^(1/g), each channel scaled by V' / V. ``w`` is the ``white`` percentile of V
    (the image's white point, which absorbs any linear darkening), ``g`` the assumed darkening
    gamma (undoes V -> s V^g); with ``gamma=None`` it is chosen in [gamma_min, gamma_max] so that
    the mean of V' is ``target``. ``white_point`` and ``exponent`` (1/g) fix the curve instead
    (the tiling of large photos estimates them once on the whole photo: :func:`gamma_curve`)."""
    v = image.max(axis=2)
    if white_point is None or exponent is None:
        c = gamma_curve(image, gamma, white, target, gamma_min, gamma_max)
        white_point, exponent = c["white_point"], c["exponent"]
    lv = np.log(np.clip(v / white_point, 1e-6, 1.0))
    ratio = np.exp(lv * exponent) / np.maximum(v, 1e-6)
    return finish(image * ratio[..., None])


def gamma_curve(
    image: np.ndarray,
    gamma: float | None = 2.0,
    white: float = 99.9,
    target: float = 0.5,
    gamma_min: float = 1.0,
    gamma_max: float = 3.5,
    **_,
) -> dict:
    """The white point and exponent :func:`gamma_brighten` applies to ``image``."""
    v = image.max(axis=2)
    w = max(float(np.percentile(v, white)), 1e-3)
    if gamma is not None:
        return {"white_point": w, "exponent": 1.0 / float(gamma)}
    sample = np.log(np.clip(v[::2, ::2] / w, 1e-6, 1.0)).ravel()
    lo, hi = 1.0 / gamma_max, 1.0 / gamma_min  # exponent range for V' = (V / w)^e
    for _ in range(25):  # bisection on the monotone mean((V / w)^e)
        e = 0.5 * (lo + hi)
        if np.exp(sample * e).mean() > target:
            lo = e
        else:
            hi = e
    return {"white_point": w, "exponent": 0.5 * (lo + hi)}
