"""Degradation detection on photos of any size: tiles at native resolution, calibrated probabilities.

    from restoreagent.perception import Detector
    det = Detector()                       # the shipped detector (restoreagent/assets/perception)
    d = det.detect(image)                  # float32 RGB (H, W, 3) in [0, 1]
    d.degradations                         # the decided set, in physical order, e.g. ['noise', 'jpeg']
    d.probabilities["noise"], d.severity["noise"], d.params["noise"]   # 0.97, 0.4, {'sigma': 23.0}

The model was trained on 128 px tiles at the photo's own pixel scale (noise and JPEG blocks are
per-pixel), so a photo is cut into up to ``max_tiles`` tiles spread evenly over it (reflect-padded
when smaller than a tile), the tiles' presence logits and severities are averaged, and the
calibration fitted on validation samples turns the logits into probabilities.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import RestoreAgentError
from ..tasks import physical_order
from .labels import SEVERITY_PARAMS, degradation_severity, denormalise_param

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / "perception"
TRAIN_HINT = "train one with `python train/train_perception.py` (docs/perception.md)"


@dataclass
class Detection:
    """What the detector decided about one image."""

    degradations: list[str]
    probabilities: dict[str, float]
    severity: dict[str, float]  # per present-or-not degradation, 0 (mild end) .. 1 (worst end)
    params: dict[str, dict[str, float]] = field(default_factory=dict)  # estimated chain parameters
    tiles: int = 0

    def to_json(self) -> dict:
        return {
            "degradations": list(self.degradations),
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "severity": {k: round(self.severity[k], 3) for k in self.degradations},
            "params": {k: {p: round(v, 4) for p, v in self.params[k].items()} for k in self.degradations},
        }

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]


def tile_grid(h: int, w: int, tile: int, max_tiles: int) -> list[tuple[int, int]]:
    """Top-left corners of up to ``max_tiles`` tiles spread evenly over an (h, w) image."""
    ny, nx = max(1, math.ceil(h / tile)), max(1, math.ceil(w / tile))
    while ny * nx > max_tiles:
        if ny >= nx and ny > 1:
            ny -= 1
        elif nx > 1:
            nx -= 1
        else:
            break
    ys = np.linspace(0, max(0, h - tile), ny).round().astype(int)
    xs = np.linspace(0, max(0, w - tile), nx).round().astype(int)
    return [(int(y), int(x)) for y in ys for x in xs]


class Detector:
    """A trained detector folder (``model.safetensors`` + ``detector.json``), loaded once."""

    def __init__(self, folder=None, device: str = "cpu", max_tiles: int = 16):
        folder = Path(folder) if folder else DEFAULT_DIR
        meta_path = folder / "detector.json"
        if not meta_path.exists():
            raise RestoreAgentError(f"no detector in {folder} (missing detector.json); {TRAIN_HINT}")
        self.folder = folder
        self.meta = json.loads(meta_path.read_text())
        self.labels: list[str] = list(self.meta["labels"])
        self.tile = int(self.meta["tile"])
        self.a = np.asarray(self.meta["platt_a"], np.float64)
        self.b = np.asarray(self.meta["platt_b"], np.float64)
        self.thresholds = np.asarray(self.meta["thresholds"], np.float64)
        self.max_tiles = int(max_tiles)
        self._device = device
        self._model = None

    @property
    def device(self):
        import torch

        return torch.device(self._device)

    @property
    def model(self):
        """The network, loaded on first use: :meth:`decide` alone (e.g. on the planner's own tower
        outputs) needs only the calibration, not torch."""
        if self._model is None:
            from safetensors.torch import load_file

            from .model import DegradationNet, NetConfig

            model = DegradationNet(NetConfig.from_dict(self.meta["net"]))
            state = load_file(str(self.folder / "model.safetensors"))
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
            self._model = model.to(self.device).eval()
        return self._model

    def tiles(self, image: np.ndarray, max_tiles: int | None = None) -> np.ndarray:
        """(N, 3, T, T) float32 tiles of an (H, W, 3) image (at most ``max_tiles``, default the detector's)."""
        img = np.asarray(image, np.float32)
        h, w = img.shape[:2]
        t = self.tile
        if h < t or w < t:
            img = np.pad(img, ((0, max(0, t - h)), (0, max(0, t - w)), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
            h, w = img.shape[:2]
        crops = [img[y : y + t, x : x + t] for y, x in tile_grid(h, w, t, max_tiles or self.max_tiles)]
        return np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2))

    def raw(self, image: np.ndarray, max_tiles: int | None = None):
        """(mean presence logits, mean severities, tile features) of one image."""
        import torch

        x = torch.from_numpy(self.tiles(image, max_tiles)).to(self.device)
        with torch.inference_mode():
            feats = self.model.features(x)
            logits = self.model.presence(feats).mean(0)
            sev = torch.sigmoid(self.model.severity(feats)).mean(0)
        return logits.cpu().numpy().astype(np.float64), sev.cpu().numpy(), feats

    def detect(self, image: np.ndarray, max_tiles: int | None = None) -> Detection:
        logits, sev, feats = self.raw(image, max_tiles)
        return self.decide(logits, sev, tiles=int(feats.shape[0]))

    def decide(self, logits, severities, tiles: int = 1) -> Detection:
        """The detection from tile-averaged presence logits and severities (calibrated, thresholded)."""
        logits = np.asarray(logits, np.float64)
        sev = np.asarray(severities, np.float64)
        probs = 1.0 / (1.0 + np.exp(-(logits * self.a + self.b)))
        present = [name for name, p, t in zip(self.labels, probs, self.thresholds) if p >= t]
        severity = degradation_severity(sev)
        params: dict[str, dict[str, float]] = {}
        for (name, key, _), s in zip(SEVERITY_PARAMS, sev):
            params.setdefault(name, {})[key] = float(denormalise_param(name, key, s))
        return Detection(
            degradations=physical_order(present),
            probabilities={n: float(p) for n, p in zip(self.labels, probs)},
            severity=severity,
            params=params,
            tiles=tiles,
        )


_CACHE: dict[tuple, Detector] = {}


def default_detector(folder=None, device: str = "cpu") -> Detector:
    """A process-wide cached :class:`Detector` (loaded on first use)."""
    key = (str(folder or DEFAULT_DIR), device)
    if key not in _CACHE:
        _CACHE[key] = Detector(folder, device=device)
    return _CACHE[key]
