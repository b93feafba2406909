"""The ``train-fusion`` job: its settings, defaults and help texts.

Run: ``restoreagent job train-fusion [key=value ...]``. Small: ``configs/smoke/train-fusion.yaml``.
The logic: :mod:`restoreagent.fusion.train` (candidate sets made once into ``data.cache``, resumable;
then the network trained on random windows and random candidate subsets of them).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import nested, option
from ..splits import TRAIN_FOLDERS, VAL_EVERY

COMBOS = ("low_light,noise", "noise,jpeg", "low_light,noise,jpeg", "noise")


@dataclass
class FusionDataOptions:
    """Candidate sets from the generator: a train crop, degraded, restored by many plans."""

    images: tuple[str, ...] = option(TRAIN_FOLDERS, "train photo folders (never the dev split)")
    val_every: int = option(VAL_EVERY, "every Nth photo (sorted) is held out for validation (0: none)")
    combos: tuple[str, ...] = option(COMBOS, "degradation sets, comma-joined; parameters drawn from PARAM_RANGES")
    samples_per_combo: int = option(300, "training candidate sets per combination")
    val_per_combo: int = option(12, "validation sets per combination (held-out photos, K = train.k_val)")
    crop: int = option(96, "side of the crops (px)")
    max_candidates: int = option(8, "plans per training set: every tool choice for the steps, at most this many")
    cache: str = option("data/fusion_candidates", "folder of the candidate sets (one .npz each; made once, resumable)")
    seed: int = option(0, "seed of the crops and degradations")


@dataclass
class FusionLoopOptions:
    max_steps: int = option(3000, "optimizer steps")
    batch_size: int = option(8, "windows per step")
    patch: int = option(64, "side of the training windows (px)")
    k_min: int = option(2, "fewest candidates drawn for a step")
    k_max: int = option(5, "most candidates drawn for a step")
    k_val: int = option(4, "candidates of the validation sets (the plan and its neighbours, as run --fuse K)")
    loss: str = option("psnr", "psnr: the mean over windows of log10 MSE (each window counts alike, whatever its "
                       "error: a dark low-light window does not drown a clean denoising one); l1: mean absolute error")
    lr: float = option(1.0e-3, "Adam learning rate (cosine decay)")
    warmup_steps: int = option(100, "linear warm-up steps")
    eval_every: int = option(500, "steps between validations")
    save_every: int = option(250, "steps between checkpoints")
    seed: int = option(0, "seed of the weights and batches")


@dataclass
class FusionTrainConfig:
    """Train the fusion network: K candidate restorations + the degraded input -> per-pixel weights."""

    output_dir: str = option("runs/fusion", "checkpoint.pt, config.yaml, summary.json")
    resume: bool = option(True, "continue from output_dir/checkpoint.pt when it exists")
    export: str | None = option("restoreagent/assets/fusion/fusion.safetensors",
                                "weights file to write (null: output_dir/fusion.safetensors)")
    widths: tuple[int, ...] = option((24, 48, 64), "channels of the U-Net's three levels")
    threads: int | None = option(None, "torch CPU threads")
    data: FusionDataOptions = nested(FusionDataOptions)
    train: FusionLoopOptions = nested(FusionLoopOptions)
