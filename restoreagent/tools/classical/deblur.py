"""Deblurring: blind linear-motion deblurring (kernel length and angle from the cepstrum) and
defocus deblurring (disk PSF), both by hyper-Laplacian-prior deconvolution whose data weight
follows the estimated noise level."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import fft as sfft

from ._util import FFT_WORKERS, deconv_hqs, disk_psf, estimate_noise, finish, line_psf, luma

_LUMA_NOISE_GAIN = float(np.sqrt(0.299**2 + 0.587**2 + 0.114**2))


def _welch_power(g: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """Power spectrum of ``g`` averaged over half-overlapping Hann-windowed n x n patches."""
    h, w = g.shape
    win = np.outer(np.hanning(n), np.hanning(n))
    ys = range(0, h - n + 1, n // 2)
    xs = range(0, w - n + 1, n // 2)
    corners = [(y, x) for y in ys for x in xs]
    total = np.zeros((n, n))
    # in batches: stacking every patch of a 24 MP photo at once took gigabytes (the FFT doubles it)
    for i in range(0, len(corners), _WELCH_BATCH):
        patches = np.stack([g[y : y + n, x : x + n] for y, x in corners[i : i + _WELCH_BATCH]])
        patches = (patches - patches.mean(axis=(1, 2), keepdims=True)) * win
        total += (np.abs(sfft.fft2(patches, axes=(1, 2), workers=FFT_WORKERS)) ** 2).sum(axis=0)
    return total / len(corners), float((win * win).sum())


_WELCH_BATCH = 256  # patches per FFT batch: 256 x 128 x 128 complex doubles is 64 MB


def _cepstrum(image: np.ndarray, n: int = 128, floor: float = 1.5, keep: float = 0.1):
    g = luma(image).astype(np.float64)
    n = min(n, 1 << int(np.log2(min(g.shape))))
    ps, w2 = _welch_power(g, n)
    # Subtract the white-noise floor so that the blur's spectral zeros show through noise.
    s = estimate_noise(image) * _LUMA_NOISE_GAIN
    nf = floor * s * s * w2
    ps = np.maximum(ps - nf, keep * nf + 1e-12)
    return sfft.fftshift(np.real(sfft.ifft2(np.log(ps + 1e-12)))).astype(np.float32), n


# The cepstral peak of an anti-aliased line PSF of length L lies about one pixel short of L;
# deconvolving with the slightly longer PSF measured best (+0.4 dB over no correction).
_LENGTH_BIAS = 0.75
_MIN_SIDE = 32  # smaller images carry too little spectrum to estimate a blur from
# A disk PSF of radius r puts a negative ring in the cepstrum at about _RING * r.
_RING = 1.9


def estimate_motion(
    image: np.ndarray, lmin: float = 3.0, lmax: float = 30.0, min_ratio: float = 0.0
) -> tuple[float, float] | None:
    """Blind linear motion estimate (length in pixels, angle in degrees), or None when the image
    is too small or the estimate is ambiguous.

    A uniform linear blur of length L puts a strong negative peak in the cepstrum at distance L
    along the motion direction; it is located by a polar search of the patch-averaged cepstrum.
    The estimate counts as ambiguous when the peak is less than ``min_ratio`` times as deep as
    the deepest one elsewhere (more than 10 degrees or 3 px away), which mostly happens in
    heavy noise.
    """
    if min(image.shape[:2]) < _MIN_SIDE:
        return None
    c, n = _cepstrum(image)
    ctr = n // 2
    angs = np.arange(0.0, 180.0, 1.0)
    lens = np.arange(lmin, min(lmax, n // 2 - 2) + 1e-6, 0.25)
    if lens.size == 0:
        return None
    rad = np.deg2rad(angs)
    mx = (ctr + np.cos(rad)[:, None] * lens[None]).astype(np.float32)
    my = (ctr - np.sin(rad)[:, None] * lens[None]).astype(np.float32)
    polar = cv2.remap(c, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    i, j = np.unravel_index(int(np.argmin(polar)), polar.shape)
    if min_ratio > 0:
        far = (np.abs((angs[:, None] - angs[i] + 90) % 180 - 90) > 10) | (np.abs(lens[None] - lens[j]) > 3)
        rival = float(polar[far].min()) if far.any() else 0.0
        if polar[i, j] >= 0 or (rival < 0 and polar[i, j] / rival < min_ratio):
            return None
    return float(lens[j]) + _LENGTH_BIAS, float(angs[i])


def data_weight(image: np.ndarray, lam: float, noise_scale: float = 25000.0) -> float:
    """HQS data weight: ``lam`` for a noise-free image, falling like ``noise_scale / sigma^2``
    (sigma on the 0-255 scale) as the estimated noise grows."""
    s = estimate_noise(image) * 255.0
    return lam / (1.0 + lam * s * s / noise_scale)


def motion_deblur(
    image: np.ndarray,
    lmin: float = 3.0,
    lmax: float = 30.0,
    lam: float = 1500.0,
    alpha: float = 0.8,
    iters: int = 8,
    min_ratio: float = 0.0,
    blur: tuple[float, float] | None = None,
) -> np.ndarray:
    """Blind motion deblurring for blur lengths in [lmin, lmax] pixels; the image is returned
    unchanged when the blur estimate is ambiguous (see ``estimate_motion``). ``blur`` (length,
    angle) fixes the estimate, a length of 0 meaning none was found (the tiling of large photos
    estimates it once on the whole photo)."""
    est = estimate_motion(image, lmin, lmax, min_ratio) if blur is None else blur
    if est is None or est[0] <= 0:
        return finish(image)
    length, angle = est
    out = deconv_hqs(image, line_psf(length, angle), data_weight(image, lam), alpha, iters)
    return finish(out)


def estimate_defocus(
    image: np.ndarray, rmin: float = 1.0, rmax: float = 5.0, min_depth: float = 0.02
) -> float:
    """Blind disk-blur radius in [rmin, rmax]. The zeros of a disk PSF's spectrum are nearly
    periodic in frequency, which puts a negative ring in the cepstrum at about 1.9 x the radius;
    it is located in the angle-averaged cepstrum. Without a clear ring, ``rmin`` (the safe
    side: over-estimating the radius rings badly)."""
    if min(image.shape[:2]) < _MIN_SIDE:
        return float(rmin)
    c, n = _cepstrum(image)
    ctr = n // 2
    angs = np.deg2rad(np.arange(0.0, 180.0, 2.0))
    qs = np.arange(max(1.0, _RING * rmin - 2.0), _RING * rmax + 2.0 + 1e-6, 0.25)
    mx = (ctr + np.cos(angs)[:, None] * qs[None]).astype(np.float32)
    my = (ctr - np.sin(angs)[:, None] * qs[None]).astype(np.float32)
    prof = cv2.remap(c, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP).mean(axis=0)
    inside = np.flatnonzero((qs >= _RING * rmin) & (qs <= _RING * rmax) & (qs < n // 2 - 2))
    if inside.size == 0:
        return float(rmin)
    j = inside[int(np.argmin(prof[inside]))]
    side = 6  # 1.5 px either side
    lo, hi = prof[max(0, j - side)], prof[min(len(qs) - 1, j + side)]
    depth = 0.5 * (lo + hi) - prof[j]
    if depth < min_depth:
        return float(rmin)
    return float(np.clip(qs[j] / _RING, rmin, rmax))


def defocus_deblur(
    image: np.ndarray,
    rmin: float = 1.0,
    rmax: float = 2.5,
    radius: float | None = None,
    lam: float = 3000.0,
    alpha: float = 0.8,
    iters: int = 8,
) -> np.ndarray:
    """Defocus deblurring with a disk PSF: ``radius`` pixels if given, else estimated in
    [rmin, rmax] (the range the variant is for)."""
    r = radius if radius is not None else estimate_defocus(image, rmin, rmax)
    out = deconv_hqs(image, disk_psf(r), data_weight(image, lam), alpha, iters)
    return finish(out)
