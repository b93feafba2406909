"""The degradation operators: float32 RGB (H, W, 3) in [0, 1] -> same shape, clipped.

Each operator takes the image, its complete parameters and a generator for its random content
(only ``noise``, ``rain`` and ``snow`` use it). The parameters are documented in
:mod:`restoreagent.degradations` (``PARAM_RANGES``). Angles are in degrees, counter-clockwise from
the image's horizontal axis (0 = horizontal, 90 = vertical).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from .depth import depth_proxy

_BORDER = cv2.BORDER_REFLECT


# ---------------------------------------------------------------- kernels


def _trim(k: np.ndarray) -> np.ndarray:
    """Drop all-zero outer rings (keeps the kernel square, odd and centred; smaller is faster)."""
    while k.shape[0] > 1 and not (k[0].any() or k[-1].any() or k[:, 0].any() or k[:, -1].any()):
        k = k[1:-1, 1:-1]
    return k


def line_kernel(length: float, angle: float, taper: bool = False, width_sigma: float = 0.0) -> np.ndarray:
    """An anti-aliased straight line through the kernel centre, ``length`` px long, at ``angle`` deg.

    The segment is sampled 4 times per pixel and splatted bilinearly, so any length and angle
    give a smooth kernel. Without taper/width it is normalised to sum 1 (a motion-blur PSF); with
    ``taper`` (ends fade out) or ``width_sigma`` (Gaussian thickening) it is normalised to a peak
    of 1 (a rain-streak stamp).
    """
    length = float(length)
    if length <= 1.0:
        return np.ones((1, 1), np.float32)
    half = (length - 1.0) / 2.0
    pad = 1 + (math.ceil(3 * width_sigma) if width_sigma > 0 else 0)
    r = math.ceil(half) + pad
    size = 2 * r + 1
    n = max(2, math.ceil(length * 4))
    t = np.linspace(-half, half, n)
    a = math.radians(angle)
    x = r + t * math.cos(a)
    y = r - t * math.sin(a)  # image rows grow downwards
    w = np.ones(n)
    if taper:
        w = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 0.5
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    fx = x - x0
    fy = y - y0
    k = np.zeros((size, size), np.float64)
    for dy, dx, wt in (
        (0, 0, (1 - fx) * (1 - fy)),
        (0, 1, fx * (1 - fy)),
        (1, 0, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        np.add.at(k, (y0 + dy, x0 + dx), w * wt)
    if width_sigma > 0:
        k = cv2.GaussianBlur(
            k, (0, 0), sigmaX=width_sigma, sigmaY=width_sigma, borderType=cv2.BORDER_CONSTANT
        )
    if taper or width_sigma > 0:
        k /= k.max()
    else:
        k /= k.sum()
    return _trim(k.astype(np.float32))


def disk_kernel(radius: float) -> np.ndarray:
    """Anti-aliased uniform disk (defocus PSF): pixel weight = clip(radius + 0.5 - distance, 0, 1), sum 1."""
    radius = float(radius)
    r = math.ceil(radius + 0.5)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    k = np.clip(radius + 0.5 - np.hypot(xx, yy), 0.0, 1.0)
    k /= k.sum()
    return _trim(k.astype(np.float32))


# ---------------------------------------------------------------- operators


def noise(image, rng, *, sigma, shot=0.0, chroma_corr=0.0, grain=0.0):
    """Additive noise of std ``sigma``/255: white Gaussian, independent per pixel and channel, by default.

    The camera parameters (all 0 by default, which is exactly the white Gaussian model) make it
    look like a camera's: ``shot`` makes a share of the variance proportional to the signal
    (Poisson-Gaussian, ``var = (sigma/255)^2 ((1 - shot) + shot x / 0.5)``: the same std at mid-grey,
    less in shadows, more in highlights); ``chroma_corr`` correlates the three channels (the
    shared part is luma-like grain); ``grain`` low-passes the field with a Gaussian of that std
    in px (demosaicing and in-camera denoising leave blotchy, spatially correlated noise),
    rescaled to keep its std.
    """
    n = rng.standard_normal(image.shape, dtype=np.float32)
    if chroma_corr > 0:
        shared = rng.standard_normal(image.shape[:2] + (1,), dtype=np.float32)
        n = np.float32(math.sqrt(1.0 - chroma_corr)) * n + np.float32(math.sqrt(chroma_corr)) * shared
    if grain > 0:
        n = cv2.GaussianBlur(n, (0, 0), sigmaX=grain, sigmaY=grain, borderType=_BORDER)
        n /= np.float32(max(float(n.std()), 1e-6))
    n *= np.float32(sigma / 255.0)
    if shot > 0:
        n *= np.sqrt(np.float32(1.0 - shot) + np.float32(2.0 * shot) * np.clip(image, 0.0, 1.0))
    return image + n


def motion_blur(image, rng, *, length, angle):
    """Uniform linear camera motion: convolution with a ``length`` px line at ``angle`` deg."""
    return cv2.filter2D(image, -1, line_kernel(length, angle), borderType=_BORDER)


def defocus_blur(image, rng, *, radius):
    """Out-of-focus blur: convolution with an anti-aliased uniform disk of ``radius`` px."""
    return cv2.filter2D(image, -1, disk_kernel(radius), borderType=_BORDER)


def jpeg(image, rng, *, quality, sharpen=0.0):
    """JPEG round trip with OpenCV (libjpeg): 8-bit, YCbCr 4:2:0 chroma subsampling, ``quality`` 1-100.

    ``sharpen`` > 0 first applies a camera's unsharp mask (Gaussian radius 1 px) of that amount:
    sharpened edges ring more after compression.
    """
    if sharpen > 0:
        soft = cv2.GaussianBlur(image, (0, 0), sigmaX=1.0, sigmaY=1.0, borderType=_BORDER)
        image = image + np.float32(sharpen) * (image - soft)
    u8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        int(quality),
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    ]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(u8[..., ::-1]), params)
    if not ok:  # pragma: no cover - libjpeg does not fail on a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return dec[..., ::-1].astype(np.float32) * np.float32(1.0 / 255.0)


def haze(image, rng, *, beta, A):
    """Atmospheric scattering ``I = J t + A (1 - t)``, ``t = exp(-beta d)``, d = :func:`depth_proxy`."""
    t = np.exp(-np.float32(beta) * depth_proxy(image))[..., None]
    return image * t + np.float32(A) * (1.0 - t)


def rain(image, rng, *, density, length, angle, intensity):
    """Synthetic rain streaks blended with a screen blend.

    ``round(density * area)`` streak centres are drawn uniformly (over the image plus a margin, so
    streaks enter from outside the frame too), each with a brightness in U(0.5, 1). The impulse
    layer is convolved with a streak stamp: a line of ``length`` px at ``angle`` deg (90 =
    vertical) with faded ends, thickened by a Gaussian of sigma 0.6 px (streaks ~2 px wide). A
    second, sparser layer of half-length, dimmer streaks (density/2, brightness x0.6) gives
    depth. The layer, times ``intensity``, is screen-blended: ``I = 1 - (1 - J)(1 - R)``,
    grey streaks as rain catches light.
    """
    h, w = image.shape[:2]
    layer = np.zeros((h, w), np.float32)
    for frac_len, frac_density, bright in ((1.0, 1.0, 1.0), (0.5, 0.5, 0.6)):
        stamp = line_kernel(max(2.0, length * frac_len), angle, taper=True, width_sigma=0.6)
        p = stamp.shape[0] // 2
        hp, wp = h + 2 * p, w + 2 * p
        n = int(round(density * frac_density * hp * wp))
        ys = rng.integers(0, hp, n)
        xs = rng.integers(0, wp, n)
        vals = rng.uniform(0.5, 1.0, n).astype(np.float32) * np.float32(bright)
        canvas = np.zeros((hp, wp), np.float32)
        np.maximum.at(canvas, (ys, xs), vals)
        streaks = cv2.filter2D(canvas, -1, stamp, borderType=cv2.BORDER_CONSTANT)
        layer = np.maximum(layer, streaks[p : p + h, p : p + w])
    r = (np.clip(layer, 0.0, 1.0) * np.float32(intensity))[..., None]
    return 1.0 - (1.0 - image) * (1.0 - r)


# Snow layers, far to near: (share of the flakes, radius and streak length relative to ``size``,
# extra Gaussian blur relative to the radius (depth of field), opacity).
_SNOW_LAYERS = (
    (0.60, 0.5, 0.25, 0.75),
    (0.30, 1.0, 0.30, 0.90),
    (0.10, 2.0, 0.50, 0.80),
)
_SNOW_VEIL = 0.12
_SNOW_WHITE = 0.96


def snow_stamp(radius: float, angle: float, blur: float) -> np.ndarray:
    """One flake: a soft disc of ``radius`` px smeared by a fall streak of ``1 + 1.5 radius`` px
    along ``angle`` deg (90 = vertical), blurred by a Gaussian of ``blur`` px; peak 1."""
    k = disk_kernel(max(radius, 0.5))
    streak = line_kernel(1.0 + 1.5 * radius, angle)
    pad = streak.shape[0] // 2 + math.ceil(3 * blur) + 1
    k = np.pad(k, pad)
    k = cv2.filter2D(k, -1, streak, borderType=cv2.BORDER_CONSTANT)
    if blur > 0:
        k = cv2.GaussianBlur(k, (0, 0), sigmaX=blur, sigmaY=blur, borderType=cv2.BORDER_CONSTANT)
    k = k / k.max()
    k[k < 1e-3] = 0.0
    return _trim(k.astype(np.float32))


_SPLAT_CHUNK = 1 << 22  # stamp pixels splatted at once (bounds memory on large images)


def snow(image, rng, *, density, size, angle, intensity):
    """Synthetic falling snow (in the spirit of Snow100K / CSD): a white veil and three flake layers.

    A uniform veil of opacity ``0.12 intensity`` (the far snow, CSD's snow haze), then three
    layers of flakes, far to near, all alpha-blended toward white: ``I = J (1 - a) + 0.96 a``.
    ``density * area`` flakes in all (uniform centres over the image plus a margin, so flakes
    enter from outside the frame), split 60/30/10 % between a far layer of small flakes
    (radius ``size / 2``), a middle one (``size``) and a near one of large, sparse, out-of-focus
    flakes (``2 size``, blurred more). A flake (:func:`snow_stamp`) is a soft disc streaked along
    the fall direction ``angle`` (90 = vertical); its peak opacity is ``intensity`` x the layer's
    (0.75, 0.9, 0.8) x U(0.6, 1); overlapping flakes add up to an opacity of at most 1.
    """
    h, w = image.shape[:2]
    # Every layer blends toward the same white, so they compose into one opacity A:
    # 1 - A = (1 - veil) * prod(1 - a_layer), and the image is blended once.
    keep = np.full((h, w), np.float32(1.0 - _SNOW_VEIL * intensity), np.float32)
    for share, rel_r, rel_blur, opacity in _SNOW_LAYERS:
        radius = size * rel_r
        stamp = snow_stamp(radius, angle, rel_blur * radius)
        p = stamp.shape[0] // 2
        hp, wp = h + 2 * p, w + 2 * p
        n = int(round(density * share * hp * wp))
        ys = rng.integers(0, hp, n)
        xs = rng.integers(0, wp, n)
        vals = rng.uniform(0.6, 1.0, n).astype(np.float32) * np.float32(opacity * intensity)
        # Splat the stamps (flakes are sparse: cheaper than convolving the whole frame). Centre
        # (ys, xs) is image pixel (ys - p, xs - p); the canvas starts 2p before the image.
        dy, dx = np.nonzero(stamp)
        weights = stamp[dy, dx]
        wc = wp + 2 * p
        alpha = np.zeros((hp + 2 * p) * wc)
        step = max(1, _SPLAT_CHUNK // len(dy))
        for i in range(0, n, step):
            idx = (ys[i : i + step, None] + dy) * wc + (xs[i : i + step, None] + dx)
            alpha += np.bincount(idx.ravel(), (vals[i : i + step, None] * weights).ravel(), minlength=alpha.size)
        alpha = alpha.reshape(hp + 2 * p, wc)[2 * p : 2 * p + h, 2 * p : 2 * p + w].astype(np.float32)
        keep *= 1.0 - np.minimum(alpha, np.float32(1.0))
    keep = keep[..., None]
    return image * keep + np.float32(_SNOW_WHITE) * (1.0 - keep)


def low_light(image, rng, *, gamma, scale, sensor=0.0, highlights=0.0):
    """Darkening on the HSV value V = max(R, G, B), hue and saturation kept (as AgenticIR does on V).

    ``V' = scale * V ** gamma``; each channel is multiplied by ``V' / V``. Camera parameters (0 by
    default: exactly that model): ``highlights`` keeps light sources and clipped highlights
    (V > 0.8) bright, as lamps and windows stay in a real night shot (weight ``highlights``
    times a smooth ramp from V = 0.8 to 1); ``sensor`` adds the dark exposure's own noise (std
    ``sensor``/255, half of the variance signal-dependent), which brightening later amplifies.
    """
    v = np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])[..., None]
    ratio = np.float32(scale) * np.power(np.maximum(v, np.float32(1e-6)), np.float32(gamma - 1.0))
    if highlights > 0:
        w = np.float32(highlights) * np.square(np.clip((v - np.float32(0.8)) / np.float32(0.2), 0.0, 1.0))
        ratio = ratio * (1.0 - w) + w
    out = image * ratio
    if sensor > 0:
        std = np.float32(sensor / 255.0) * np.sqrt(np.float32(0.5) + np.clip(out, 0.0, 1.0))
        out = out + rng.standard_normal(image.shape, dtype=np.float32) * std
    return out


def low_resolution(image, rng, *, scale):
    """Bicubic downscale by ``scale`` (antialiased, as MATLAB ``imresize``), then bicubic back up.

    The output has the input's size (the VDSR convention): the lost detail is the degradation,
    and a super-resolution tool restores it image -> image. PIL's bicubic (a = -0.5, kernel
    widened by the factor when shrinking) is the MATLAB ``imresize`` kernel used to make SR data.
    """
    h, w = image.shape[:2]
    s = int(scale)
    if s <= 1:
        return image.copy()
    sw, sh = max(1, round(w / s)), max(1, round(h / s))
    out = np.empty_like(image)
    for c in range(3):
        ch = Image.fromarray(np.ascontiguousarray(image[..., c]))
        small = ch.resize((sw, sh), Image.Resampling.BICUBIC)
        out[..., c] = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))
    return out


OPERATORS = {
    "noise": noise,
    "motion_blur": motion_blur,
    "defocus_blur": defocus_blur,
    "jpeg": jpeg,
    "haze": haze,
    "rain": rain,
    "low_light": low_light,
    "low_resolution": low_resolution,
    "snow": snow,
}
