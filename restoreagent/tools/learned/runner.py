"""Running a torch image network as a tool: device, precision, padding and tiling.

Shared by the project's own learned tools and by published models from the hub catalogue
(:mod:`restoreagent.zoo`). A :class:`TorchRunner` turns ``model: (1, 3, H, W) -> (1, 3, sH, sW)``
into ``image -> image`` on float32 RGB arrays in [0, 1]:

Environment overrides for every learned and hub tool: ``RESTOREAGENT_DEVICE`` (``cpu``, ``cuda``,
``cuda:1``), ``RESTOREAGENT_HALF=1``, ``RESTOREAGENT_TILE`` (pixels; ``0`` = no tiling).

- **device**: ``"auto"`` picks CUDA when present, else CPU.
- **precision**: ``half=True`` runs in float16 on CUDA, and in bfloat16 on a CPU with native
  bfloat16 arithmetic (AMX or AVX-512 BF16: the plain U-Nets there run 1.7-2.6x faster than in
  float32, the guided ones 1.2-1.5x, their outputs 53-58 dB PSNR from float32's;
  ``eval/half_precision.py``, docs/performance.md). Other CPUs emulate bfloat16 slowly, so there the model stays in
  float32. The default is float32 everywhere: scores and labels stay reproducible.
- **padding**: inputs are reflect-padded to a multiple the architecture needs, then cropped.
- **tiling**: images larger than ``tile`` pixels on a side are cut into overlapping tiles that
  are blended with linear ramps in the overlap (the outer quarter of each tile's overlap, which
  saw padding instead of image, gets no weight), so peak memory is bounded by the tile size and
  seams do not show. A long thin image is cut only along its long side, into tiles as long as a
  square tile's area allows (:meth:`TorchRunner.tile_shape`). ``tile=0`` turns tiling off.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.nn import functional as F


def resolve_device(device: str = "auto") -> torch.device:
    device = os.environ.get("RESTOREAGENT_DEVICE", device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX tiles or AVX-512 BF16), so oneDNN's bfloat16
    convolutions are faster than float32 ones rather than emulated."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def half_dtype(device: torch.device) -> torch.dtype:
    """The reduced precision ``half=True`` means on ``device``: float16 on CUDA, bfloat16 on a CPU
    that computes it natively, else float32 (no faster precision there)."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_fast_bfloat16():
        return torch.bfloat16
    return torch.float32


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = -(-(length - overlap) // stride)  # ceil
    # spread the tiles evenly so every overlap is at least `overlap` and the last tile ends at length
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1-D blending weight of a tile: 0 over the outer quarter of the overlap (pixels there saw the
    tile's zero padding, not the image), then a linear rise; 1 where the tile touches the border."""
    w = np.ones(length, np.float32)
    if overlap > 0:
        margin = overlap // 4
        r = np.clip((np.arange(overlap, dtype=np.float32) + 0.5 - margin) / (overlap - 2 * margin), 0.0, 1.0)
        if not at_start:
            w[:overlap] = r
        if not at_end:
            w[-overlap:] = np.minimum(w[-overlap:], r[::-1])
    return w


class TorchRunner:
    """``image -> image`` from a torch module, with device, precision, padding and tiling."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        scale: int = 1,
        multiple: int = 1,
        device: str = "auto",
        half: bool = False,
        tile: int = 512,
        overlap: int = 32,
        half_ok: bool = True,
    ):
        # half_ok=False (a hub model's own flag) or a ``full_precision`` model: it breaks in reduced
        # precision, so neither ``half`` nor RESTOREAGENT_HALF lowers it
        # users tune every learned tool at once from the environment (no catalogue edits)
        if tile or not getattr(model, "global_op", False):  # global operators are never tiled
            tile = int(os.environ.get("RESTOREAGENT_TILE", tile))
        half_ok = half_ok and not getattr(model, "full_precision", False)
        half = half_ok and os.environ.get("RESTOREAGENT_HALF", "1" if half else "0") == "1"
        if tile and tile <= 2 * overlap:
            raise ValueError(f"tile ({tile}) must be larger than twice the overlap ({overlap})")
        self.device = resolve_device(device)
        self.dtype = half_dtype(self.device) if half else torch.float32
        self.model = model.eval().to(self.device, self.dtype)
        # oneDNN's convolutions are 1.3-1.4x faster on NHWC tensors on CPU (measured on the ResUNet
        # at 128 and 512 px); a model opts in with a ``channels_last`` attribute
        self.channels_last = self.device.type == "cpu" and getattr(model, "channels_last", False)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.scale, self.multiple, self.tile, self.overlap = scale, multiple, tile, overlap
        # images per forward pass in batch(): on a GPU a batch fills the device; on one CPU thread a
        # batch of 128 px images is not faster than one image at a time (oneDNN is near its peak
        # FLOP/s already, and a batch's activations leave the cache), so the CPU default is 1
        self.max_batch = int(os.environ.get("RESTOREAGENT_BATCH", 32 if self.device.type == "cuda" else 1))

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """One tile (h, w, 3) -> (s h, s w, 3), padding to the model's multiple (a batch of one)."""
        return self._forward_batch(x[None])[0]

    @torch.inference_mode()
    def _forward_batch(self, x: np.ndarray) -> np.ndarray:
        """Equal-sized tiles (n, h, w, c) -> (n, s h, s w, 3) in one pass (padding as in ``_forward``)."""
        h, w = x.shape[1:3]
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.device, self.dtype)
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            t = F.pad(t, (0, pw, 0, ph), mode=mode)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        y = self.model(t)[..., : h * self.scale, : w * self.scale]
        return y.float().clamp_(0, 1).cpu().numpy().transpose(0, 2, 3, 1)

    def batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Every image through the model, ``max_batch`` equal-sized untiled images per pass."""
        if not images:
            return []
        shape = images[0].shape
        tiled = self.tile and (shape[0] > self.tile or shape[1] > self.tile)
        if self.max_batch < 2 or tiled or any(im.shape != shape for im in images):
            return [self(im) for im in images]
        out: list[np.ndarray] = []
        for a in range(0, len(images), self.max_batch):
            y = self._forward_batch(np.stack(images[a : a + self.max_batch]))
            out += [np.ascontiguousarray(y[i]) for i in range(len(y))]
        return out

    def tile_shape(self, h: int, w: int) -> tuple[int, int]:
        """The tile for an ``h`` x ``w`` image: ``tile`` x ``tile``, except for a long thin image (one
        side within ``tile``), whose tiles span its short side and are as long as the area of one
        square tile allows (its short side padded to the multiple counted), so a 3 x 2048 strip runs
        as one pass rather than five small ones, and memory stays bounded by a tile's area."""
        t = self.tile
        if h <= t and w > t:
            return h, min(w, max(t, t * t // (-(-h // self.multiple) * self.multiple)))
        if w <= t and h > t:
            return min(h, max(t, t * t // (-(-w // self.multiple) * self.multiple))), w
        return min(t, h), min(t, w)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if not self.tile or (h <= self.tile and w <= self.tile):
            return self._forward(image)
        th, tw = self.tile_shape(h, w)
        if (th, tw) == (h, w):
            return self._forward(image)
        s, ov = self.scale, self.overlap
        out = np.zeros((h * s, w * s, 3), np.float32)
        weight = np.zeros((h * s, w * s, 1), np.float32)
        ys, xs = tile_starts(h, th, ov), tile_starts(w, tw, ov)
        for y0 in ys:
            for x0 in xs:
                y = self._forward(image[y0 : y0 + th, x0 : x0 + tw])
                wy = _ramp(th * s, ov * s, y0 == 0, y0 + th == h)
                wx = _ramp(tw * s, ov * s, x0 == 0, x0 + tw == w)
                wgt = (wy[:, None] * wx[None, :])[..., None]
                out[y0 * s : (y0 + th) * s, x0 * s : (x0 + tw) * s] += y * wgt
                weight[y0 * s : (y0 + th) * s, x0 * s : (x0 + tw) * s] += wgt
        return out / weight
