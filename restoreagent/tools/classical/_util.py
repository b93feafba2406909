"""Shared building blocks: colour transforms, box and guided filters, sliding-window DCT
shrinkage, FFT deconvolution of padded images, PSFs, and noise-level estimation."""

from __future__ import annotations

import os

import cv2
import numpy as np

# Threads per FFT: all cores by default (one image, one process); the labeler's worker processes
# set RESTOREAGENT_FFT_WORKERS=1 so K workers do not start K x cores threads.
FFT_WORKERS = int(os.environ.get("RESTOREAGENT_FFT_WORKERS", "-1"))

# --- colour -------------------------------------------------------------------------------

# Orthonormal "opponent" transform: i.i.d. noise stays i.i.d. with the same sigma.
OPP = np.array(
    [
        [1 / np.sqrt(3), 1 / np.sqrt(3), 1 / np.sqrt(3)],
        [1 / np.sqrt(2), 0.0, -1 / np.sqrt(2)],
        [1 / np.sqrt(6), -2 / np.sqrt(6), 1 / np.sqrt(6)],
    ],
    dtype=np.float32,
)


def rgb_to_opp(img: np.ndarray) -> np.ndarray:
    return (img @ OPP.T).astype(np.float32)


def opp_to_rgb(img: np.ndarray) -> np.ndarray:
    return (img @ OPP).astype(np.float32)


# JPEG (JFIF, BT.601 full range) YCbCr, offsets so that all channels lie in [0, 1].
_YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32
)
_YCC_INV = np.linalg.inv(_YCC).astype(np.float32)


def rgb_to_ycc(img: np.ndarray) -> np.ndarray:
    out = img @ _YCC.T
    out[..., 1:] += 0.5
    return out.astype(np.float32)


def ycc_to_rgb(ycc: np.ndarray) -> np.ndarray:
    y = ycc.copy()
    y[..., 1:] -= 0.5
    return (y @ _YCC_INV.T).astype(np.float32)


def luma(img: np.ndarray) -> np.ndarray:
    return (img @ _YCC[0]).astype(np.float32)


def finish(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] float32 (the tool contract)."""
    return np.clip(np.nan_to_num(img, nan=0.0), 0.0, 1.0).astype(np.float32)


# --- box and guided filters ----------------------------------------------------------------


def box(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, reflected borders."""
    k = 2 * int(r) + 1
    return cv2.boxFilter(x, -1, (k, k), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a single-channel guide (src may have channels)."""
    guide = guide.astype(np.float32)
    src = src.astype(np.float32)
    g = guide[..., None] if src.ndim == 3 else guide
    mean_i = box(guide, r)
    var_i = box(guide * guide, r) - mean_i * mean_i
    mi = mean_i[..., None] if src.ndim == 3 else mean_i
    vi = var_i[..., None] if src.ndim == 3 else var_i
    mean_p = box(src, r)
    cov = box(g * src, r) - mi * mean_p
    a = cov / (vi + eps)
    b = mean_p - a * mi
    return (box(a, r) * g + box(b, r)).astype(np.float32)


# --- sliding-window DCT shrinkage ------------------------------------------------------------

def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (== scipy.fft.dct(np.eye(n), norm="ortho", axis=0), written out
    so that importing the tools does not import scipy.fft, ~0.3 s)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.sqrt(np.where(k == 0, 1.0 / n, 2.0 / n)) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))


_C8 = _dct_matrix(8).astype(np.float32)  # _C8 @ v == dct(v)


def sliding_dct(
    x: np.ndarray,
    thr,
    step: int = 1,
    pilot: np.ndarray | None = None,
    sigma=None,
    qtable: np.ndarray | None = None,
) -> np.ndarray:
    """Shift-averaged 8x8 DCT shrinkage of an (H, W) or (H, W, C) image.

    Without ``pilot``: hard thresholding, coefficient kept where |c| >= thr * w (``thr`` a
    scalar or one per channel; ``w`` the 8x8 ``qtable`` weights, 1 when absent; DC always kept).
    With ``pilot``: empirical Wiener shrinkage c * p^2 / (p^2 + (sigma*w)^2), p the pilot's
    coefficient. The block grid is shifted by ``step`` pixels (1: all 64 shifts) and the blocks
    are aggregated with weights 1 / (1 + number of kept coefficients).
    """
    x = np.asarray(x, np.float32)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[..., None]
    h, w, c = x.shape
    p = 8
    pad = ((0, 0), (p, p), (p, p))
    xp = np.pad(np.moveaxis(x, 2, 0), pad, mode="symmetric")  # (C, H + 16, W + 16)
    pp = None
    if pilot is not None:
        pp = np.pad(np.moveaxis(np.asarray(pilot, np.float32).reshape(x.shape), 2, 0), pad, mode="symmetric")
    q = np.ones((8, 8), np.float32) if qtable is None else np.asarray(qtable, np.float32)
    per_channel = np.broadcast_to(np.asarray(sigma if pilot is not None else thr, np.float32), (c,))
    t = per_channel[:, None, None, None, None] * q  # (C, 1, 1, 8, 8)
    if pilot is not None:
        t = t * t
    acc = np.zeros_like(xp)
    wacc = np.zeros_like(xp)
    for dy in range(0, 8, step):
        for dx in range(0, 8, step):
            n, m = (xp.shape[1] - dy) // 8, (xp.shape[2] - dx) // 8
            sl = (slice(None), slice(dy, dy + 8 * n), slice(dx, dx + 8 * m))
            co = _fwd(xp[sl], n, m)
            if pp is None:
                keep = np.abs(co) >= t
                keep[..., 0, 0] = True
                co *= keep
                wt = 1.0 / (1.0 + np.count_nonzero(keep, axis=(3, 4)).astype(np.float32))
            else:
                pc = _fwd(pp[sl], n, m) ** 2
                g = pc / (pc + t)
                g[..., 0, 0] = 1.0
                co *= g
                wt = 1.0 / (1.0 + (g * g).sum(axis=(3, 4)))
            r = _inv(co * wt[..., None, None], n, m)
            acc[sl] += r
            wacc[sl] += np.repeat(np.repeat(wt, 8, axis=1), 8, axis=2)
    out = np.moveaxis((acc / np.maximum(wacc, 1e-12))[:, p : p + h, p : p + w], 0, 2)
    return np.ascontiguousarray(out[..., 0] if squeeze else out)


def _fwd(planes: np.ndarray, n: int, m: int) -> np.ndarray:
    """(C, 8n, 8m) -> (C, n, m, 8, 8) block DCT coefficients."""
    b = planes.reshape(planes.shape[0], n, 8, m, 8).transpose(0, 1, 3, 2, 4)
    return _C8 @ b @ _C8.T


def _inv(co: np.ndarray, n: int, m: int) -> np.ndarray:
    """Inverse of :func:`_fwd`."""
    b = _C8.T @ co @ _C8
    return b.transpose(0, 1, 3, 2, 4).reshape(co.shape[0], 8 * n, 8 * m)


# --- noise level ---------------------------------------------------------------------------


def estimate_noise(img: np.ndarray) -> float:
    """Gaussian noise sigma (0-1 scale): Immerkaer's Laplacian-difference estimator on the
    flatter half of each channel (by Sobel gradient), median over channels."""
    img = img[..., None] if img.ndim == 2 else img
    if min(img.shape[:2]) < 3:
        return 0.0
    m = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    est = []
    for c in range(img.shape[2]):
        x = np.ascontiguousarray(img[..., c], dtype=np.float32)
        r = np.abs(cv2.filter2D(x, -1, m, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1]
        g = np.hypot(cv2.Sobel(x, -1, 1, 0), cv2.Sobel(x, -1, 0, 1))[1:-1, 1:-1]
        r = r[g <= np.median(g)]
        est.append(np.sqrt(np.pi / 2) * float(r.mean()) / 6.0 if r.size else 0.0)
    return float(np.median(est))


# --- deconvolution -------------------------------------------------------------------------


def psf2otf(psf: np.ndarray, shape) -> np.ndarray:
    """Zero-pad the PSF to ``shape``, circularly centre it at the origin, rFFT it."""
    from scipy import fft as sfft  # imported when an FFT tool runs (0.3 s)
    big = np.zeros(shape, np.float64)
    kh, kw = psf.shape
    big[:kh, :kw] = psf
    big = np.roll(big, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return sfft.rfft2(big, workers=FFT_WORKERS)


def _grad_energy(shape) -> np.ndarray:
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return (4 * np.sin(np.pi * fy) ** 2 + 4 * np.sin(np.pi * fx) ** 2).astype(np.float64)


def extend(x: np.ndarray, psf: np.ndarray):
    """Extend an (H, W) image so that its periodic wrap has no jump, for FFT deconvolution:
    reflect-pad by twice the PSF size and fade the outer half of the padding into a heavily
    smoothed copy. Errors of the (unknown) true boundary stay in a band at the border.
    Returns the extended image and the slice of the original inside it.
    """
    from scipy import fft as sfft  # imported when an FFT tool runs (0.3 s)
    h, w = x.shape
    p = 2 * max(psf.shape) + 8
    hh = sfft.next_fast_len(h + 2 * p, real=True)
    ww = sfft.next_fast_len(w + 2 * p, real=True)
    pt, pl = (hh - h) // 2, (ww - w) // 2
    e = cv2.copyMakeBorder(x, pt, hh - h - pt, pl, ww - w - pl, cv2.BORDER_REFLECT)
    smooth = _wrap_blur(e, max(psf.shape))
    # Weight 1 on the image and a band of p/2 around it, falling linearly to 0 over the next p/2.
    half = max(p // 2, 1)
    dy = np.maximum(np.maximum(pt - np.arange(hh), np.arange(hh) - (pt + h - 1)), 0)
    dx = np.maximum(np.maximum(pl - np.arange(ww), np.arange(ww) - (pl + w - 1)), 0)
    ry = np.clip(2.0 - dy / half, 0.0, 1.0)
    rx = np.clip(2.0 - dx / half, 0.0, 1.0)
    wgt = np.outer(ry, rx)
    return wgt * e + (1 - wgt) * smooth, (slice(pt, pt + h), slice(pl, pl + w))


def _wrap_blur(e: np.ndarray, s: float) -> np.ndarray:
    from scipy import fft as sfft  # imported when an FFT tool runs (0.3 s)
    h, w = e.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    g = np.exp(-2 * (np.pi * s) ** 2 * (fy * fy + fx * fx))
    return sfft.irfft2(sfft.rfft2(e, workers=FFT_WORKERS) * g, s=e.shape, workers=FFT_WORKERS)


def deconv_tikhonov(img: np.ndarray, psf: np.ndarray, lam: float) -> np.ndarray:
    """Regularised inverse filter with a gradient (Tikhonov) prior:
    X = conj(K) Y / (|K|^2 + lam |D|^2), on a boundary-extended image (see ``extend``)."""
    from scipy import fft as sfft  # imported when an FFT tool runs (0.3 s)
    chans = img if img.ndim == 3 else img[..., None]
    psf = psf.astype(np.float64)
    out = np.empty(chans.shape, np.float32)
    filt = None
    for c in range(chans.shape[2]):
        e, sl = extend(chans[..., c].astype(np.float64), psf)
        if filt is None:
            k = psf2otf(psf, e.shape)
            filt = np.conj(k) / (np.abs(k) ** 2 + lam * _grad_energy(e.shape))
        out[..., c] = sfft.irfft2(sfft.rfft2(e, workers=FFT_WORKERS) * filt, s=e.shape, workers=FFT_WORKERS)[sl]
    return out if img.ndim == 3 else out[..., 0]


# --- point spread functions ----------------------------------------------------------------


def line_psf(length: float, angle_deg: float) -> np.ndarray:
    """Linear motion PSF: a centred segment of ``length`` pixels at ``angle_deg`` (counter-
    clockwise from the x axis, image y pointing down), bilinearly splatted, odd size, sum 1."""
    length = max(float(length), 1.0)
    n = int(np.ceil(length)) + 2
    n += 1 - n % 2
    c = n // 2
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, max(2, int(np.ceil(length * 8))))
    a = np.deg2rad(angle_deg)
    xs, ys = c + t * np.cos(a), c - t * np.sin(a)
    k = np.zeros((n, n), np.float64)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dy, dx, wgt in (
        (0, 0, (1 - fx) * (1 - fy)),
        (0, 1, fx * (1 - fy)),
        (1, 0, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        np.add.at(k, (y0 + dy, x0 + dx), wgt)
    return (k / k.sum()).astype(np.float32)


def disk_psf(radius: float) -> np.ndarray:
    """Defocus PSF: a uniform disk of ``radius`` pixels, anti-aliased by 8x supersampling."""
    radius = max(float(radius), 0.5)
    n = int(np.ceil(radius))
    ss = 8
    coords = (np.arange((2 * n + 1) * ss) + 0.5) / ss - (n + 0.5)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    m = (xx * xx + yy * yy <= radius * radius).astype(np.float64)
    k = m.reshape(2 * n + 1, ss, 2 * n + 1, ss).mean(axis=(1, 3))
    return (k / k.sum()).astype(np.float32)


def deconv_hqs(
    img: np.ndarray,
    psf: np.ndarray,
    lam: float,
    alpha: float = 0.8,
    iters: int = 8,
    beta0: float = 1.0,
    beta_rate: float = 2.0,
) -> np.ndarray:
    """Non-blind deconvolution with a hyper-Laplacian gradient prior (Krishnan & Fergus 2009):
    min_x lam/2 ||k*x - y||^2 + sum |grad x|^alpha by half-quadratic splitting, ``iters`` rounds
    with the splitting weight beta growing from ``beta0`` by ``beta_rate``; all channels at once.

    Boundaries: the image is extended (see ``extend``) and, every round, the extension is
    replaced by the blurred current estimate, so only the observed pixels constrain the result
    (the padding is treated as unknown). Without this, a slanted PSF, which reflection does not
    preserve, makes the padding inconsistent and the error spreads along the blur direction.
    """
    from scipy import fft as sfft  # imported when an FFT tool runs (0.3 s)
    chans = img if img.ndim == 3 else img[..., None]
    psf = psf.astype(np.float64)
    ext = [extend(chans[..., c].astype(np.float32), psf) for c in range(chans.shape[2])]
    sl = ext[0][1]
    e = np.stack([x for x, _ in ext], axis=-1).astype(np.float32)
    shape = e.shape[:2]
    observed = np.zeros(shape + (1,), bool)
    observed[sl] = True
    k = psf2otf(psf, shape)[..., None].astype(np.complex64)
    dx = psf2otf(np.array([[0.0, -1.0, 1.0]]), shape)[..., None]
    dy = psf2otf(np.array([[0.0], [-1.0], [1.0]]), shape)[..., None]
    ktk = (np.abs(k) ** 2).astype(np.float32)
    dtd = (np.abs(dx) ** 2 + np.abs(dy) ** 2).astype(np.float32)
    u = e
    x = e
    beta = beta0
    for _ in range(iters):
        gx = np.roll(x, -1, axis=1) - x
        gy = np.roll(x, -1, axis=0) - x
        wx, wy = _shrink(gx, beta, alpha), _shrink(gy, beta, alpha)
        # D^T w for forward differences: w(x-1) - w(x)
        dtw = (np.roll(wx, 1, axis=1) - wx) + (np.roll(wy, 1, axis=0) - wy)
        kty = np.conj(k) * sfft.rfft2(u, axes=(0, 1), workers=FFT_WORKERS)
        num = np.float32(lam) * kty + np.float32(beta) * sfft.rfft2(dtw, axes=(0, 1), workers=FFT_WORKERS)
        xf = num / (np.float32(lam) * ktk + np.float32(beta) * dtd)
        x = sfft.irfft2(xf, s=shape, axes=(0, 1), workers=FFT_WORKERS)
        u = np.where(observed, e, sfft.irfft2(k * xf, s=shape, axes=(0, 1), workers=FFT_WORKERS))
        beta *= beta_rate
    out = x[sl].astype(np.float32)
    return out if img.ndim == 3 else out[..., 0]


def _shrink(v: np.ndarray, beta: float, alpha: float) -> np.ndarray:
    """Approximate minimiser of |w|^alpha + beta/2 (w - v)^2 (generalised soft threshold)."""
    a = np.abs(v)
    if alpha >= 1.0:
        return np.sign(v) * np.maximum(a - 1.0 / beta, 0.0)
    t = (2.0 / beta * (1.0 - alpha)) ** (1.0 / (2.0 - alpha)) + alpha / beta * (
        2.0 / beta * (1.0 - alpha)
    ) ** ((alpha - 1.0) / (2.0 - alpha))
    w = a.copy()
    for _ in range(2):
        w = a - alpha / beta * np.maximum(w, 1e-8) ** (alpha - 1.0)
    return np.where(a > t, np.sign(v) * np.maximum(w, 0.0), 0.0)
