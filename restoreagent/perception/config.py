"""The perception trainer's settings: one dataclass, the only place for their defaults.

``python train/train_perception.py key=value ...`` overrides any field (``spec.camera=0.3``,
``net.widths=[32,64,128,192]``); ``preset=smoke`` starts from :data:`SMOKE` (a CPU run of under a
minute, used by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace

import yaml

from .data import SampleSpec
from .model import NetConfig

TRAIN_FOLDERS = ("../shared/data/images/urban100_crops", "../shared/data/images/sun_hays80", "../shared/data/images/set14")


@dataclass(frozen=True)
class PerceptionTrainConfig:
    """Training of the degradation detector on fresh generated samples."""

    photos: tuple[str, ...] = TRAIN_FOLDERS  # folders of clean train photos (never a benchmark split)
    val_fraction: float = 0.1  # share of the photos held out (by file-name hash) for validation
    out: str = "runs/perception/default"  # run folder: checkpoints, metrics, the exported detector
    steps: int = 20_000  # optimiser steps (the schedule's length unless time_budget_s ends it first)
    time_budget_s: float = 0.0  # > 0: also stop (and anneal the schedule) by this much training time
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 300  # steps of linear warm-up, then cosine decay to 1% of lr
    severity_weight: float = 2.0  # weight of the severity loss against the presence BCE
    workers: int = 2  # DataLoader processes generating samples
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    checkpoint_every: int = 500  # steps; checkpoints carry model, optimiser, step and elapsed time
    log_every: int = 50
    val_samples: int = 4096  # fixed validation samples (calibration and thresholds are fitted on them)
    resume: bool = True  # continue from out/checkpoint when it exists
    export: str = ""  # also write the calibrated detector folder here (e.g. restoreagent/assets/perception)
    wandb: str = "disabled"  # offline | online | disabled
    spec: SampleSpec = field(default_factory=SampleSpec)
    net: NetConfig = field(default_factory=NetConfig)


SMOKE = PerceptionTrainConfig(
    out="runs/perception/smoke",
    steps=6,
    batch_size=8,
    warmup=2,
    workers=0,
    checkpoint_every=3,
    log_every=2,
    val_samples=64,
    net=NetConfig(widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1), hidden=32),
)

PRESETS = {"default": PerceptionTrainConfig(), "smoke": SMOKE}


def _coerce(value, current):
    if is_dataclass(current):
        raise ValueError("set a field of it, e.g. spec.camera=0.3")
    if isinstance(current, tuple):
        return tuple(value if isinstance(value, list | tuple) else [value])
    if isinstance(current, bool):
        return bool(value)
    if isinstance(current, int) and not isinstance(current, bool):
        return int(value)
    if isinstance(current, float):
        return float(value)
    return str(value)


def _set(cfg, dotted: str, value):
    head, _, rest = dotted.partition(".")
    names = {f.name for f in fields(cfg)}
    if head not in names:
        raise ValueError(f"unknown setting {dotted!r}; known: {', '.join(sorted(names))}")
    current = getattr(cfg, head)
    if rest:
        return replace(cfg, **{head: _set(current, rest, value)})
    return replace(cfg, **{head: _coerce(value, current)})


def from_overrides(overrides: list[str]) -> PerceptionTrainConfig:
    """The config from ``key=value`` overrides (values parsed as YAML; ``preset=NAME`` first)."""
    cfg = PRESETS["default"]
    rest = []
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"expected key=value, got {item!r}")
        if key == "preset":
            if value not in PRESETS:
                raise ValueError(f"unknown preset {value!r}; known: {', '.join(PRESETS)}")
            cfg = PRESETS[value]
        else:
            rest.append((key, yaml.safe_load(value)))
    for key, value in rest:
        cfg = _set(cfg, key, value)
    return cfg
