"""Shared building blocks: colour transforms, box and guided filters, sliding-window DCT
shrinkage, FFT deconvolution with mirror boundaries, and noise-level estimation."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import fft as sfft

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

_C8 = sfft.dct(np.eye(8), norm="ortho", axis=0).astype(np.float32)  # _C8 @ v == dct(v)


def _blocks(xp: np.ndarray, dy: int, dx: int):
    n = (xp.shape[0] - dy) // 8
    m = (xp.shape[1] - dx) // 8
    sl = (slice(dy, dy + 8 * n), slice(dx, dx + 8 * m))
    return sl, xp[sl].reshape(n, 8, m, 8, xp.shape[2])


def _fwd(b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ajbkc,lk->aiblc", _C8, b, _C8, optimize=True)


def _inv(co: np.ndarray) -> np.ndarray:
    return np.einsum("ij,aibkc,kl->ajblc", _C8, co, _C8, optimize=True)


def sliding_dct(
    x: np.ndarray,
    thr,
    step: int = 1,
    pilot: np.ndarray | None = None,
    sigma=None,
    qtable: np.ndarray | None = None,
) -> np.ndarray:
    """Shift-averaged 8x8 DCT shrinkage of an (H, W, C) image.

    Without ``pilot``: hard thresholding, coefficient kept where |c| >= thr * w (``thr`` a
    scalar or one per channel; ``w`` the 8x8 ``qtable`` weights, 1 when absent; DC always kept).
    With ``pilot``: empirical Wiener shrinkage c * p^2 / (p^2 + (sigma*w)^2), p the pilot's
    coefficient. Blocks are aggregated with weights 1 / (1 + number of kept coefficients).
    """
    x = np.asarray(x, np.float32)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[..., None]
    c = x.shape[2]
    w = np.ones((8, 8), np.float32) if qtable is None else np.asarray(qtable, np.float32)
    w = w[None, :, None, :, None]
    p = 8
    pad = ((p, p), (p, p), (0, 0))
    xp = np.pad(x, pad, mode="symmetric")
    pp = np.pad(np.asarray(pilot, np.float32).reshape(x.shape), pad, mode="symmetric") if pilot is not None else None
    acc = np.zeros_like(xp)
    wacc = np.zeros(xp.shape, np.float32)
    if pilot is None:
        t = (np.broadcast_to(np.asarray(thr, np.float32), (c,)))[None, None, None, None, :] * w
    else:
        s2 = ((np.broadcast_to(np.asarray(sigma, np.float32), (c,)))[None, None, None, None, :] * w) ** 2
    for dy in range(0, 8, step):
        for dx in range(0, 8, step):
            sl, b = _blocks(xp, dy, dx)
            co = _fwd(b)
            if pilot is None:
                keep = np.abs(co) >= t
                keep[:, 0, :, 0, :] = True
                co = co * keep
                nk = keep.sum(axis=(1, 3), keepdims=True)
                wt = 1.0 / (1.0 + nk.astype(np.float32))
            else:
                _, pb = _blocks(pp, dy, dx)
                pc = _fwd(pb) ** 2
                g = pc / (pc + s2)
                g[:, 0, :, 0, :] = 1.0
                co = co * g
                wt = 1.0 / (1.0 + (g * g).sum(axis=(1, 3), keepdims=True))
            r = _inv(co) * wt
            n, _, m, _, _ = r.shape
            acc[sl] += r.reshape(8 * n, 8 * m, c)
            wacc[sl] += np.broadcast_to(wt, r.shape).reshape(8 * n, 8 * m, c)
    out = (acc / np.maximum(wacc, 1e-12))[p:-p, p:-p]
    return out[..., 0] if squeeze else out


# --- noise level ---------------------------------------------------------------------------


def estimate_noise(img: np.ndarray) -> float:
    """Gaussian noise sigma (0-1 scale) from the median absolute diagonal wavelet detail of luma
    (Donoho), ignoring strong edges."""
    y = luma(img) if img.ndim == 3 else img.astype(np.float32)
    h, w = y.shape
    y = y[: h // 2 * 2, : w // 2 * 2]
    hh = (y[0::2, 0::2] - y[0::2, 1::2] - y[1::2, 0::2] + y[1::2, 1::2]) / 2.0
    return float(np.median(np.abs(hh)) / 0.6745)


# --- deconvolution -------------------------------------------------------------------------


def psf2otf(psf: np.ndarray, shape) -> np.ndarray:
    """Zero-pad the PSF to ``shape``, circularly centre it at the origin, rFFT it."""
    big = np.zeros(shape, np.float64)
    kh, kw = psf.shape
    big[:kh, :kw] = psf
    big = np.roll(big, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return sfft.rfft2(big, workers=-1)


def mirror(x: np.ndarray) -> np.ndarray:
    """Symmetric extension to 2H x 2W: periodic without jumps at the wrap."""
    top = np.concatenate([x, x[:, ::-1]], axis=1)
    return np.concatenate([top, top[::-1]], axis=0)


def _grad_energy(shape) -> np.ndarray:
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return (4 * np.sin(np.pi * fy) ** 2 + 4 * np.sin(np.pi * fx) ** 2).astype(np.float64)


def deconv_tikhonov(img: np.ndarray, psf: np.ndarray, lam: float) -> np.ndarray:
    """Regularised inverse filter with a gradient (Tikhonov) prior:
    X = conj(K) Y / (|K|^2 + lam |D|^2), on the mirror-extended image (no wrap artefacts)."""
    h, w = img.shape[:2]
    chans = img if img.ndim == 3 else img[..., None]
    ext_shape = (2 * h, 2 * w)
    k = psf2otf(psf.astype(np.float64), ext_shape)
    filt = np.conj(k) / (np.abs(k) ** 2 + lam * _grad_energy(ext_shape))
    out = np.empty(chans.shape, np.float32)
    for c in range(chans.shape[2]):
        e = mirror(chans[..., c].astype(np.float64))
        out[..., c] = sfft.irfft2(sfft.rfft2(e, workers=-1) * filt, s=ext_shape, workers=-1)[:h, :w]
    return out if img.ndim == 3 else out[..., 0]
