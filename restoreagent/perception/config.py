"""The ``train-perception`` job: the detector trainer's settings, defaults and help texts.

Run: ``python train/train_perception.py [--config FILE] [key=value ...]`` (= ``restoreagent job
train-perception``), e.g. ``spec.camera=0.3 net.widths=[32,64,128,192]``. Small (a CPU run of under
a minute): ``configs/smoke/train-perception.yaml``. The logic: :mod:`restoreagent.perception.train`.
The mechanism (dataclass -> flags, YAML overrides, key=value): :mod:`restoreagent.config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import nested, option
from ..splits import TRAIN_FOLDERS
from .data import SampleSpec
from .model import NetConfig


@dataclass(frozen=True)
class PerceptionTrainConfig:
    """Training of the degradation detector on fresh generated samples."""

    photos: tuple[str, ...] = option(TRAIN_FOLDERS, "folders of clean train photos (never a benchmark split)")
    val_fraction: float = option(0.1, "share of the photos held out (by file-name hash) for validation")
    out: str = option("runs/perception/default", "run folder: checkpoints, metrics, the exported detector")
    steps: int = option(20_000, "optimiser steps (the schedule's length unless time_budget_s ends it first)")
    time_budget_s: float = option(0.0, "> 0: also stop (and anneal the schedule) by this much training time")
    batch_size: int = option(256, "samples per step")
    lr: float = option(2e-3, "AdamW learning rate")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    warmup: int = option(300, "steps of linear warm-up, then cosine decay to 1% of lr")
    severity_weight: float = option(2.0, "weight of the severity loss against the presence BCE")
    workers: int = option(2, "DataLoader processes generating samples")
    seed: int = option(0, "seed of the samples and the weights")
    device: str = option("auto", "auto | cpu | cuda")
    checkpoint_every: int = option(500, "steps; checkpoints carry model, optimiser, step and elapsed time")
    log_every: int = option(50, "steps between log lines")
    val_samples: int = option(4096, "fixed validation samples (calibration and thresholds are fitted on them)")
    resume: bool = option(True, "continue from out/checkpoint when it exists")
    init: str = option("", "a detector folder whose weights a new run starts from (e.g. restoreagent/assets/perception: "
                       "more training of the shipped detector); ignored when out/checkpoint exists")
    export: str = option("", "also write the calibrated detector folder here (e.g. restoreagent/assets/perception)")
    wandb: str = option("disabled", "offline | online | disabled")
    spec: SampleSpec = nested(SampleSpec, "how samples are drawn (restoreagent.perception.data)")
    net: NetConfig = nested(NetConfig, "the network (restoreagent.perception.model)")
