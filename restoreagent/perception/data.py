"""Training samples made on the fly: a clean photo crop, a random degradation chain, its labels.

There is no fixed dataset: every sample is new (the generator is the data), so the model never
sees the same degraded tile twice and more training steps always mean more data. Workers of a
torch ``DataLoader`` each run :class:`SampleStream` with their own seed and yield whole batches.

A sample (:func:`make_sample`):
- a train photo, randomly downscaled half the time (area, to x0.35-1: photos come at many
  pixel scales, and a detector that only knows one calls every softer photo blurred);
- a ``tile``-px crop (flipped at random), or, for a share ``context`` of the samples, a crop of
  twice that size that is degraded whole before a tile is cut out of it (so a tile of a
  degraded photo, which is what :mod:`.detector` scores, looks like training data too);
- ``k`` degradations: none with probability ``p_clean``, else 1-4 core ones uniformly (the
  benchmark's protocol), plus ``snow`` with probability ``p_snow``; camera-realism parameters
  (``degrade(camera=...)``) with probability ``camera``.

Validation uses a split of the *train* folders (:func:`restoreagent.splits.split_by_name_hash`), never a benchmark folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..degradations import degrade
from ..imageio import load_image
from ..tasks import CORE_DEGRADATIONS
from .labels import LABELS, SEVERITY_PARAMS, targets_from_record


@dataclass(frozen=True)
class SampleSpec:
    """How samples are drawn (see the module docstring)."""

    tile: int = 128
    p_clean: float = 0.15
    max_k: int = 4
    p_snow: float = 0.07
    camera: float = 0.5
    context: float = 0.4
    rescale: float = 0.5


def _downscale(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape[:2]
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    u8 = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(u8.resize((nw, nh), Image.Resampling.BOX), dtype=np.float32) / np.float32(255.0)


def _crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    if h < size or w < size:  # small photos: reflect-pad up to the crop size
        img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="reflect")
        h, w = img.shape[:2]
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    c = img[y : y + size, x : x + size]
    if rng.random() < 0.5:
        c = c[:, ::-1]
    return np.ascontiguousarray(c)


def sample_chain(spec: SampleSpec, rng: np.random.Generator) -> list[str]:
    """The degradation names of one sample (physical order is applied by ``degrade``)."""
    names: list[str] = []
    if rng.random() >= spec.p_clean:
        k = int(rng.integers(1, spec.max_k + 1))
        names = [CORE_DEGRADATIONS[int(i)] for i in rng.choice(len(CORE_DEGRADATIONS), size=k, replace=False)]
    if rng.random() < spec.p_snow:
        names.append("snow")
    return names


def make_sample(photo: np.ndarray, spec: SampleSpec, rng: np.random.Generator):
    """(tile uint8 (T, T, 3), presence, severity, severity_mask) of one fresh sample."""
    context = rng.random() < spec.context
    size = 2 * spec.tile if context else spec.tile
    factor = float(rng.uniform(0.35, 1.0)) if rng.random() < spec.rescale else 1.0
    if factor < 1.0 and min(photo.shape[:2]) * factor >= size:
        # crop what the downscaled crop covers, then shrink only that (cheaper than the photo)
        crop = _downscale(_crop(photo, int(np.ceil(size / factor)), rng), factor)[:size, :size]
        crop = np.ascontiguousarray(np.pad(crop, ((0, size - crop.shape[0]), (0, size - crop.shape[1]), (0, 0)), mode="edge"))
    else:
        crop = _crop(photo, size, rng)
    names = sample_chain(spec, rng)
    seed = int(rng.integers(0, 2**62))
    if names:
        out, record = degrade(crop, chain=names, seed=seed, camera=spec.camera)
    else:
        out, record = crop, {"chain": []}
    if context:
        out = _crop(out, spec.tile, rng)
    presence, severity, mask = targets_from_record(record)
    tile = (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return tile, presence, severity, mask


class SampleStream(torch.utils.data.IterableDataset):
    """An endless stream of batches of fresh samples; each DataLoader worker draws its own."""

    def __init__(self, photos, spec: SampleSpec, batch_size: int, seed: int, max_side: int = 1024):
        super().__init__()
        self.paths = [str(p) for p in photos]
        if not self.paths:
            raise ValueError("no training photos")
        self.spec, self.batch_size, self.seed, self.max_side = spec, batch_size, seed, max_side
        self._photos = None

    def _load(self):
        photos = []
        for p in self.paths:
            img = load_image(p)
            if max(img.shape[:2]) > self.max_side:  # keep worker memory bounded
                img = _downscale(img, self.max_side / max(img.shape[:2]))
            photos.append(img)
        return photos

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        if self._photos is None:
            self._photos = self._load()
        rng = np.random.default_rng([self.seed, wid])
        while True:
            yield make_batch(self._photos, self.spec, self.batch_size, rng)


def make_batch(photos, spec: SampleSpec, batch_size: int, rng: np.random.Generator) -> dict:
    tiles = np.empty((batch_size, spec.tile, spec.tile, 3), np.uint8)
    presence = np.empty((batch_size, len(LABELS)), np.float32)
    severity = np.empty((batch_size, len(SEVERITY_PARAMS)), np.float32)
    mask = np.empty_like(severity)
    for i in range(batch_size):
        photo = photos[int(rng.integers(0, len(photos)))]
        tiles[i], presence[i], severity[i], mask[i] = make_sample(photo, spec, rng)
    return {
        "tiles": torch.from_numpy(tiles),
        "presence": torch.from_numpy(presence),
        "severity": torch.from_numpy(severity),
        "mask": torch.from_numpy(mask),
    }


def fixed_set(photo_paths, spec: SampleSpec, n: int, seed: int, batch_size: int = 256) -> list[dict]:
    """A reproducible set of ``n`` samples (validation / calibration), as batches."""
    stream = SampleStream(photo_paths, spec, batch_size, seed)
    photos = stream._load()
    rng = np.random.default_rng([seed, 10_000])
    batches, left = [], n
    while left > 0:
        b = min(batch_size, left)
        batches.append(make_batch(photos, spec, b, rng))
        left -= b
    return batches


def tiles_to_tensor(tiles_u8: torch.Tensor) -> torch.Tensor:
    """(B, T, T, 3) uint8 -> (B, 3, T, T) float in [0, 1]."""
    return tiles_u8.permute(0, 3, 1, 2).float().div_(255.0)
