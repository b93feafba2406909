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
    combo_weights: tuple[float, ...] | None = option(
        (2.0, 2.0, 0.5, 1.5), "share of the training sets per combination (null: alike); the two issue "
        "targets (low light + noise, noise + JPEG) get most")
    samples_per_combo: int = option(3000, "training candidate sets per combination on average (times combo_weights; "
                                    "the shipped weights' last stage: 12,000 sets, about 22 min to make on 2 cores "
                                    "and 4.6 GB in data.cache)")
    val_per_combo: int = option(10, "validation sets per combination (held-out photos, K = train.k_val)")
    crop: int = option(160, "side of the crops (px)")
    plans: str = option("brackets", "plans of a training set: brackets (what run --fuse blends: the plan, its "
                        "reordering, its strength brackets) or all (every tool choice for the steps)")
    max_candidates: int = option(5, "plans per training set (at most)")
    cache: str = option("data/fusion_candidates", "folder of the candidate sets (one .npz each; made once, resumable)")
    workers: int = option(2, "processes making candidate sets (one torch thread each)")
    seed: int = option(0, "seed of the crops and degradations")


@dataclass
class FusionLoopOptions:
    max_steps: int = option(1500, "optimizer steps")
    batch_size: int = option(6, "windows per step")
    patch: int = option(160, "side of the training windows (px; data.crop: the whole crop, so the image-level "
                        "context sees a whole image as at run time)")
    k_min: int = option(2, "fewest candidates drawn for a step")
    k_max: int = option(5, "most candidates drawn for a step")
    prior_rate: float = option(0.0, "share of the draws in which the plan is marked as the one to fall back on "
                               "(the network's prior; run --fuse marks none, docs/fusion.md says why)")
    k_val: int = option(4, "candidates of the validation sets (the plan and its neighbours, as run --fuse K)")
    loss: str = option("psnr", "psnr: the mean over windows of log10 MSE (each window counts alike, whatever its "
                       "error: a dark low-light window does not drown a clean denoising one); l1: mean absolute error")
    lr: float = option(1.0e-3, "Adam learning rate (cosine decay)")
    warmup_steps: int = option(100, "linear warm-up steps")
    eval_every: int = option(250, "steps between validations")
    save_every: int = option(100, "steps between checkpoints")
    seed: int = option(0, "seed of the weights and batches")


@dataclass
class FusionTrainConfig:
    """Train the fusion network: K candidate restorations + the degraded input -> per-pixel weights."""

    output_dir: str = option("runs/fusion", "checkpoint.pt, config.yaml, summary.json")
    resume: bool = option(True, "continue from output_dir/checkpoint.pt when it exists")
    init: str | None = option(None, "start from these weights (a fusion .safetensors, e.g. the shipped "
                              "restoreagent/assets/fusion/fusion.safetensors) instead of random ones; a resumed "
                              "checkpoint wins; the widths come from the file")
    export: str | None = option("restoreagent/assets/fusion/fusion.safetensors",
                                "weights file to write (null: output_dir/fusion.safetensors)")
    widths: tuple[int, ...] = option((16, 32, 48), "channels of the U-Net's three levels")
    threads: int | None = option(None, "torch CPU threads (training; candidate sets: data.workers)")
    data: FusionDataOptions = nested(FusionDataOptions)
    train: FusionLoopOptions = nested(FusionLoopOptions)


@dataclass
class FusionMixConfig:
    """Train the whole-photo mix head of one task set (restoreagent/fusion/mix.py) on the fusion job's candidate sets."""

    output_dir: str = option("runs/fusion_mix", "summary.json, config.yaml")
    export: str | None = option(None, "head file to write (null: restoreagent/assets/fusion/mix_<tasks>.safetensors)")
    fusion_weights: str | None = option(None, "the U-Net whose per-pixel logits run --fuse adds (null: what run --fuse "
                                        "uses for the task set); picks the head's pixel_scale on the validation sets")
    threads: int | None = option(1, "torch CPU threads")
    members: int = option(5, "MLPs in the head's ensemble (different seeds; their logits are averaged)")
    detector: bool = option(True, "the head also reads the degradation detector's presence logits and severities of "
                            "the input (retrain the head when the detector changes)")
    hidden: int = option(64, "width of each MLP")
    steps: int = option(3000, "optimizer steps per member (batches of 128 sets)")
    lr: float = option(1.0e-3, "Adam learning rate")
    seed: int = option(0, "seed of the weights and batches")
    k_val: int = option(8, "candidates of the validation sets (the rule's first k_val)")
    pixel_scales: tuple[float, ...] = option((0.0, 0.5, 1.0), "scales of the U-Net's per-pixel logits tried on "
                                             "the validation sets; the one with the best median gain over the "
                                             "best fixed candidate is kept")
    data: FusionDataOptions = nested(FusionDataOptions)
