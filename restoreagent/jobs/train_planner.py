"""The ``train-planner`` job: its settings, defaults and help texts.

Run: ``python train/train_planner.py [--config FILE] key=value ...`` (= ``restoreagent job train-planner``),
e.g. ``planner=smolvlm_256m data.source=disk data.path=data/sft`` (``planner=NAME`` merges
``configs/planner/NAME.yaml``). Small: ``configs/smoke/train-planner.yaml``. The logic:
:mod:`restoreagent.planners.vlm.training` (loop), ``train_data``, ``collator``, ``finetune``, ``evaluation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import nested, option
from ..splits import TRAIN_FOLDERS, VALIDATION_RULE

# Attention projections of both the vision tower and the language model, across families:
# SigLIP/CLIP/Idefics3 (q,k,v,out_proj), Llama/Qwen2 (q,k,v,o_proj), Qwen2-VL vision (attn.qkv, attn.proj).
LORA_TARGET = r".*(self_attn|attn|attention)\.(q_proj|k_proj|v_proj|o_proj|out_proj|qkv|proj)$"
NEW_TOKEN_MODES = ("trainable_tokens", "modules_to_save", "frozen")


@dataclass
class LoraOptions:
    r: int = option(16, "LoRA rank")
    alpha: int = option(32, "LoRA alpha")
    dropout: float = option(0.05, "LoRA dropout")
    target_modules: str = option(LORA_TARGET, "regex of the modules that get adapters (attention projections of "
                                 "the vision tower and the language model)")
    modules_to_save: list[str] = option(help="modules trained and saved whole beside the adapter", factory=list)
    new_tokens: str = option("trainable_tokens", "rows of words added by extend_vocabulary: trainable_tokens "
                             "(only those rows) | modules_to_save (whole embedding and head) | frozen")


@dataclass
class FinetuneOptions:
    mode: str = option("full", "full | lora (a from-scratch model needs full training first)")
    freeze_vision: bool = option(False, "full mode: keep the vision tower fixed")
    lora: LoraOptions = nested(LoraOptions)


@dataclass
class ViewOptions:
    """What the planner sees (restoreagent.planners.vlm.view)."""

    layout: str = option("mosaic_detail", "mosaic_detail: whole image, 2 native-pixel crops, a detail map; mosaic; none")
    size: int = option(128, "side of the view in pixels")


@dataclass
class PlannerOptions:
    """The model: the embedded default (a tiny LLaVA built from scratch with a word-level plan
    vocabulary), a saved planner, or a hub VLM (``configs/planner/*.yaml``)."""

    name: str = option("default", "a label for the run")
    build: str | None = option("default", "build from scratch into <run>/base: default, or a tiny test model "
                               "(tiny_idefics3, ...); null: load `model`")
    model: str | None = option(None, "folder or hub name when build is null (null: restoreagent/assets/planner)")
    seed: int = option(0, "seed of the built weights")
    sizes: dict[str, Any] | None = option(None, "overrides of build_default.DEFAULT_SIZES, e.g. {text_layers: 3}")
    view: ViewOptions | None = option(help="what the planner sees; null: the starting model's", factory=ViewOptions)
    tools: dict[str, list[str]] | None = option(None, "task -> tool names for targets and constraints; null: the registry")
    extend_vocabulary: bool = option(True, "starting from a trained word-level planner: add the words of tools it "
                                     "cannot name yet (restoreagent.planners.vlm.extend); a no-op for subword tokenizers")
    processor_kwargs: dict[str, Any] | None = option(None, "passed to AutoProcessor.from_pretrained")
    dtype: str = option("float32", "weights dtype (use train.mixed_precision=bf16 on a GPU)")
    lr: float = option(1.0e-3, "learning rate (train.lr overrides it)")
    gradient_checkpointing: bool = option(False, "trade compute for memory (train.gradient_checkpointing overrides it)")
    finetune: FinetuneOptions = nested(FinetuneOptions)


@dataclass
class ReplayOptions:
    """Examples of another dataset mixed in (keeps old skills when tuning on a new task)."""

    path: str | None = option(None, "dataset to replay, e.g. data/default/sft")
    ratio: float = option(1.0, "replayed examples per new training example")


@dataclass
class Stage1Options:
    """The stage-1 set made by the degradation generator (data.source=stage1)."""

    train_images: tuple[str, ...] = option(TRAIN_FOLDERS, "train photo folders")
    val_images: tuple[str, ...] | None = option(None, f"validation photo folders; null: {VALIDATION_RULE} (no hold-out "
                                                "below 24 photos: then scikit-image's photos)")
    n_train: int = option(4000, "training examples")
    n_val: int = option(200, "validation examples")
    crop: Any = option(256, "crop side in pixels; a list: one of its sizes drawn per example")
    k_weights: tuple[float, ...] = option((0.1, 0.3, 0.3, 0.2, 0.1), "probability of 0, 1, 2, 3, 4 degradations")
    seed: int = option(0, "seed of the examples")
    camera: float = option(0.0, "probability of camera-realism parameters per degradation (degrade(camera=))")
    p_snow: float = option(0.0, "probability of adding the snow extension")
    targets: str = option("fixed", "fixed: the fixed recipe; severity: its tools matched to the recorded severity",
                          choices=("fixed", "severity"))


@dataclass
class PlannerDataOptions:
    source: str = option("stage1", "stage1: made by the degradation generator (built at data.path if missing); "
                         "disk: a saved dataset (restoreagent dataset build-sft): image, prompt, target, scenario")
    path: str = option("data/planner_stage1", "the dataset folder")
    val_fraction: float = option(0.05, "held out when the dataset has no validation split")
    max_val: int | None = option(200, "validation examples used at most")
    max_train: int | None = option(None, "training examples used at most")
    augment: bool = option(True, "random places for the native-pixel crops of the view")
    replay: ReplayOptions = nested(ReplayOptions)
    stage1: Stage1Options = nested(Stage1Options)


@dataclass
class PlannerLoopOptions:
    max_steps: int | None = option(2000, "optimizer steps (null: epochs x steps per epoch)")
    epochs: int = option(1, "epochs when max_steps is null")
    batch_size: int = option(32, "examples per step (per device)")
    grad_accum: int = option(1, "gradient accumulation steps")
    lr: float | None = option(None, "learning rate (null: planner.lr)")
    weight_decay: float = option(0.01, "AdamW weight decay")
    warmup_steps: int | None = option(100, "linear warm-up steps of the cosine schedule (null: 5% of the steps)")
    max_grad_norm: float | None = option(1.0, "gradient clipping (null: none)")
    mixed_precision: str = option("no", "no | fp16 | bf16")
    device: str = option("auto", "auto | cpu")
    num_workers: int = option(0, "data loader processes")
    num_threads: int | None = option(None, "torch threads on CPU (null: torch's default)")
    seed: int = option(0, "seed of the data order, augmentation and held-out split")
    log_every: int = option(10, "steps between loss logs")
    eval_every: int = option(250, "steps between evaluations (0: never)")
    eval_generate: int = option(100, "validation examples decoded (constrained) at each evaluation")
    save_every: int = option(500, "steps between checkpoints (0: only at the end)")
    keep_checkpoints: int = option(2, "checkpoints kept")
    gradient_checkpointing: bool | None = option(None, "null: planner.gradient_checkpointing")


@dataclass
class WandbOptions:
    enabled: bool = option(True, "log to Weights & Biases")
    mode: str = option("offline", "WANDB_MODE wins when set; `wandb sync` uploads later")
    project: str = option("restoreagent-planner", "wandb project")


@dataclass
class PlannerTrainConfig:
    """Train the VLM planner: dataset on disk -> collator (loss on answer tokens) -> accelerate loop."""

    output_dir: str | None = option(None, "checkpoints, final/, summary.json, wandb/ (null: runs/planner/<date_time>)")
    resume: Any = option(False, "true: the last checkpoint in output_dir (its saved config wins); auto: that when one "
                         "exists, else start; or a checkpoint path")
    export: str | None = option(None, "copy the final planner folder here, e.g. restoreagent/assets/planner")
    planner: PlannerOptions = nested(PlannerOptions)
    data: PlannerDataOptions = nested(PlannerDataOptions)
    train: PlannerLoopOptions = nested(PlannerLoopOptions)
    wandb: WandbOptions = nested(WandbOptions)


@dataclass(kw_only=True)
class Stage1DataConfig(Stage1Options):
    """Write a stage-1 set (generated images, true degradations + fixed recipe targets) to ``out``."""

    out: str = option(help="dataset folder to write")
    tools: dict[str, list[str]] | None = option(None, "task -> tool names for the targets; null: the registry")
