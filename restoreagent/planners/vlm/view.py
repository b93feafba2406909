"""What the planner looks at: a small picture that keeps native pixels.

Noise, JPEG blocking and blur disappear when a photo is downscaled to a VLM's input size, while
haze, low light and rain are easiest to judge on the whole image. So the default view is a
mosaic of ``size`` x ``size`` pixels with four tiles of ``size/2``:

    +----------------+----------------+
    | whole image,   | native pixels, |
    | area-resized   | centre crop    |
    +----------------+----------------+
    | native pixels, | native pixels, |
    | upper-left     | lower-right    |
    +----------------+----------------+

``layout="mosaic_detail"`` replaces the lower-right tile by a *detail map* of the centre crop: the
absolute high-frequency residual ``|x - blur(x)|``, amplified, in grey. Noise shows as bright
texture, blur and low resolution as darkness, JPEG blocking as an 8-pixel grid, so even a tiny
vision tower (whose patch embedding is linear) sees them at once.

Native crops start on multiples of 8 pixels so that JPEG block edges fall at the same place in
every patch.

``layout="tiles"`` is what a planner whose vision tower is the degradation detector
(:mod:`.perception_tower`) sees: a ``size`` x ``size`` mosaic of native-pixel tiles of
:data:`TILE` px, spread evenly over the photo (random places in training), reflect-padded when the
photo is smaller than a tile, as the detector itself scores photos.

``layout="crop"`` is one native centre crop, ``layout="resize"`` the whole image resized, and
``layout="none"`` hands the image to the processor untouched (what a pretrained VLM's own
image processor expects). Training and inference build the view with the same function.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...perception.detector import tile_grid

LAYOUTS = ("mosaic", "mosaic_detail", "crop", "resize", "none", "tiles")
TILE = 128  # the detector's tile (restoreagent.perception)
DETAIL_GAIN = 6.0
GRID = 8  # JPEG block size


@dataclass(frozen=True)
class ViewConfig:
    layout: str = "mosaic"
    size: int = 128

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown view layout {self.layout!r}; layouts: {', '.join(LAYOUTS)}")
        if self.size < 8:
            raise ValueError(f"view size must be at least 8, got {self.size}")
        if self.layout == "tiles" and self.size % TILE:
            raise ValueError(f"a tiles view is a mosaic of {TILE}-px tiles: size must be a multiple of {TILE}, got {self.size}")

    def to_dict(self) -> dict:
        return asdict(self)


def _rgb(image) -> np.ndarray:
    """(H, W, 3) uint8, or float32 in [0, 1] (converted tile by tile, so big photos stay cheap)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8 and a.dtype != np.float32:
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    if a.shape[:2] == (h, w):
        return a
    shrink = a.shape[0] >= h and a.shape[1] >= w
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def _native_crop(a: np.ndarray, cy: float, cx: float, s: int) -> np.ndarray:
    """An s x s crop of native pixels centred at fractional (cy, cx); upsampled if the image is smaller."""
    h, w = a.shape[:2]
    if h < s or w < s:
        a = _resize(a, max(h, s), max(w, s))
        h, w = a.shape[:2]
    y = int(round(cy * h - s / 2))
    x = int(round(cx * w - s / 2))
    y = min(max(y, 0), h - s)
    x = min(max(x, 0), w - s)
    y, x = y - y % GRID, x - x % GRID
    return a[y : y + s, x : x + s]


def detail_map(tile: np.ndarray, gain: float = DETAIL_GAIN) -> np.ndarray:
    """Grey uint8 image of the amplified absolute high-frequency residual of a uint8 RGB tile."""
    import cv2

    f = tile.astype(np.float32) / 255.0
    r = np.abs(f - cv2.GaussianBlur(f, (0, 0), 1.0)).mean(axis=2)
    g = (np.clip(r * gain, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _square_global(a: np.ndarray, s: int) -> np.ndarray:
    h, w = a.shape[:2]
    m = min(h, w)
    y, x = (h - m) // 2, (w - m) // 2
    k = max(1, m // (4 * s))  # big photos: decimate to ~4x the tile first (fast; then a 4x area resize
    a = a[y : y + m : k, x : x + m : k]  # as for the 256-pixel training crops)
    return _resize(np.ascontiguousarray(a), s, s)


def planner_view(image, config: ViewConfig | None = None, rng: np.random.Generator | None = None):
    """The planner's view of ``image`` (float [0, 1] or uint8 RGB) as a PIL image.

    ``rng`` (training only) moves the native crops to random places; inference uses fixed places.
    """
    from PIL import Image

    cfg = config or ViewConfig()
    a = _rgb(image)
    s = cfg.size
    if cfg.layout == "none":
        out = _to_uint8(a)
    elif cfg.layout == "resize":
        out = _to_uint8(_square_global(a, s))
    elif cfg.layout == "tiles":
        out = _tile_mosaic(a, s // TILE, rng)
    elif cfg.layout == "crop":
        c = rng.uniform(0.2, 0.8, size=2) if rng is not None else (0.5, 0.5)
        out = _to_uint8(_native_crop(a, c[0], c[1], s))
    else:
        t = s // 2
        spots = [(0.5, 0.5), (0.25, 0.25), (0.75, 0.75)]
        if rng is not None:
            spots = [tuple(rng.uniform(0.1, 0.9, size=2)) for _ in spots]
        tiles = [_square_global(a, t)] + [_native_crop(a, cy, cx, t) for cy, cx in spots]
        tiles = [_to_uint8(x) for x in tiles]
        if cfg.layout == "mosaic_detail":
            tiles[3] = detail_map(tiles[1])
        out = np.empty((2 * t, 2 * t, 3), np.uint8)
        out[:t, :t], out[:t, t:], out[t:, :t], out[t:, t:] = tiles
        if out.shape[0] != s:
            out = _resize(out, s, s)
    return Image.fromarray(np.ascontiguousarray(out), "RGB")


def _tile_mosaic(a: np.ndarray, grid: int, rng: np.random.Generator | None) -> np.ndarray:
    h, w = a.shape[:2]
    if h < TILE or w < TILE:
        a = np.pad(a, ((0, max(0, TILE - h)), (0, max(0, TILE - w)), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
        h, w = a.shape[:2]
    n = grid * grid
    if rng is not None:
        spots = [(int(rng.integers(0, h - TILE + 1)), int(rng.integers(0, w - TILE + 1))) for _ in range(n)]
    else:
        spots = tile_grid(h, w, TILE, n)
        spots = [spots[i % len(spots)] for i in range(n)]
    out = np.empty((grid * TILE, grid * TILE, 3), np.uint8)
    for i, (y, x) in enumerate(spots):
        r, c = divmod(i, grid)
        out[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] = _to_uint8(a[y : y + TILE, x : x + TILE])
    return out
