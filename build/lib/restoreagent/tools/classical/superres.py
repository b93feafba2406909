"""Super-resolution in the same-size convention (bicubic down by s, bicubic back up, output the
input's size): iterative back-projection through the degradation operator of an assumed scale
(Irani & Peleg 1991), i.e. Landweber deconvolution of "down then up"."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ._util import finish


def down_up(x: np.ndarray, scale: float) -> np.ndarray:
    """Antialiased bicubic shrink by ``scale`` and bicubic enlargement back (PIL, per channel)."""
    h, w = x.shape[:2]
    sw, sh = max(1, round(w / scale)), max(1, round(h / scale))
    out = np.empty_like(x)
    for c in range(x.shape[2]):
        ch = Image.fromarray(np.ascontiguousarray(x[..., c], dtype=np.float32))
        small = ch.resize((sw, sh), Image.Resampling.BICUBIC)
        out[..., c] = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))
    return out


def ibp_sr(image: np.ndarray, scale: float = 2.0, iters: int = 8, step: float = 1.0) -> np.ndarray:
    """Restore detail lost to a down-up by ``scale``: x <- x + step * (y - down_up(x)),
    ``iters`` times from x = y."""
    y = image.astype(np.float32)
    x = y.copy()
    for _ in range(iters):
        x += step * (y - down_up(x, scale))
    return finish(x)
