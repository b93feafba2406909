"""The ``train-tool`` job: its settings, defaults and help texts.

Run: ``python train/train_tool.py tool=NAME [key=value ...]`` (= ``restoreagent job train-tool``).
The tool's declaration (``restoreagent/catalog/learned/NAME.yaml``) says what it learns and may
override ``data`` and ``train`` below; a config file and the command line override both. Small:
``configs/smoke/train-tool.yaml``. The logic: :mod:`restoreagent.tools.learned.training`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..catalog.learned import learned_tool
from ..config import nested, option
from ..splits import TRAIN_FOLDERS, VAL_EVERY


@dataclass
class ToolDataOptions:
    """Pairs from the project's generator: a pool of degraded crops, random windows drawn from it."""

    images: tuple[str, ...] = option(TRAIN_FOLDERS, "train photo folders")
    val_every: int = option(VAL_EVERY, "every Nth photo (sorted) is held out for validation (0: none)")
    n_pairs: int = option(1500, "training pool: crops degraded once, windows drawn from them")
    pool_crop: int = option(128, "side of the pool's crops (px)")
    n_val: int = option(48, "validation pairs")
    val_crop: int = option(128, "side of the validation crops (px)")
    patch: int = option(64, "side of the training windows (px)")
    augment: bool = option(True, "random flips")
    camera: float = option(0.0, "probability of camera-realism parameters per pair (degradations CAMERA_PARAMS)")
    transpose: bool = option(True, "vertical flips and transposes too (off for haze: depth grows upwards)")
    seed: int = option(0, "seed of the pairs")


@dataclass
class ToolLoopOptions:
    max_steps: int = option(3000, "optimizer steps")
    batch_size: int = option(16, "windows per step")
    lr: float = option(1.0e-3, "Adam learning rate (cosine decay)")
    warmup_steps: int = option(100, "linear warm-up steps")
    eval_every: int = option(500, "steps between validations")
    save_every: int = option(250, "steps between checkpoints")
    seed: int = option(0, "seed of the weights and batches")


@dataclass
class ToolTrainConfig:
    """Train one learned tool: pairs from the generator -> residual U-Net (or CurveNet) -> safetensors."""

    tool: str = option("unet_denoise_mid", "the declared tool to train (restoreagent/catalog/learned/NAME.yaml)")
    output_dir: str = option("runs/tools/{tool}", "checkpoint.pt, config.yaml, summary.json, wandb/ ({tool}: the tool's name)")
    resume: bool = option(True, "continue from output_dir/checkpoint.pt when it exists")
    export: str | None = option("restoreagent/assets/tools/{tool}.safetensors", "weights file to write (the default "
                                "replaces the shipped one; null: output_dir/NAME.safetensors)")
    device: str = option("auto", "auto: CUDA when present, else CPU")
    threads: int | None = option(None, "torch CPU threads (1 when training two tools side by side)")
    wandb: bool = option(True, "log to wandb (offline unless WANDB_MODE says otherwise)")
    arch_kwargs: dict[str, Any] | None = option(None, "overrides of the declaration's arch_kwargs (e.g. smaller widths)")
    guides: list[Any] | None = option(None, "replaces the declaration's guides ([] for none)")
    data: ToolDataOptions = nested(ToolDataOptions)
    train: ToolLoopOptions = nested(ToolLoopOptions)

    @staticmethod
    def layers(cfg: ToolTrainConfig) -> list[dict]:
        """The declaration's overrides of ``data`` and ``train`` (applied before files and the command line)."""
        decl = learned_tool(cfg.tool)
        return [{"data": dict(decl.data), "train": dict(decl.train)}]
