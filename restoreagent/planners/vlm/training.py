"""Training the VLM planner: the loop (accelerate; full or LoRA), checkpoints and resume, the final folder.

The job's settings, defaults and help texts: :class:`restoreagent.jobs.train_planner.PlannerTrainConfig`
(``python train/train_planner.py key=value ...``). The other concerns live beside this module:
``train_data`` (stage-1 data, splits, replay), ``collator`` (loss on the answer tokens only),
``finetune`` (base model, LoRA) and ``evaluation`` (constrained generation metrics).
Checkpoints carry their config; ``resume=true`` continues from the last one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

import yaml

from ...config import build, to_dict
from ...errors import RestoreAgentError
from ...jobs.train_planner import PlannerTrainConfig
from ...splits import VALIDATION_RULE
from .build_default import read_meta, write_meta
from .collator import PlannerCollator
from .evaluation import evaluate_generation
from .extend import extension_token_ids
from .finetune import apply_finetune_mode, count_parameters, prepare_base
from .planner import eos_ids
from .train_data import STAGE1, build_stage1_dataset, crop_sizes, load_splits, mix_replay
from .view import ViewConfig

log = logging.getLogger(__name__)


def _latest_checkpoint(run_dir: Path) -> Path | None:
    ck = sorted((run_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    ck = [c for c in ck if (c / "state.json").is_file()]
    return ck[-1] if ck else None


def _save_yaml(path: Path, cfg: PlannerTrainConfig) -> None:
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def resolve_resume(cfg) -> tuple[PlannerTrainConfig, Path | None]:
    """The config to run with and the checkpoint to resume from (the checkpoint's config wins)."""
    cfg = build(PlannerTrainConfig, cfg)
    resume = cfg.resume
    if not resume or resume in ("false", "False"):
        return cfg, None
    if cfg.output_dir is None:
        raise RestoreAgentError("resume needs output_dir: the run folder to continue")
    run_dir = Path(cfg.output_dir)
    named = isinstance(resume, str) and resume not in ("true", "True", "last", "auto")
    ck = Path(resume) if named else _latest_checkpoint(run_dir)
    if resume == "auto" and (ck is None or not (ck / "state.json").is_file()):
        return cfg, None  # auto: resume when there is a checkpoint, else start (scripts re-run safely)
    if ck is None or not (ck / "state.json").is_file():
        raise RestoreAgentError(f"resume: no checkpoint found under {run_dir / 'checkpoints'}")
    saved = build(PlannerTrainConfig, yaml.safe_load((ck / "config.yaml").read_text()))
    saved = dataclasses.replace(saved, resume=resume, output_dir=str(ck.parent.parent))
    if cfg.train.max_steps and cfg.train.max_steps != saved.train.max_steps:
        log.info("resume: max_steps %s -> %s", saved.train.max_steps, cfg.train.max_steps)
        saved.train.max_steps = cfg.train.max_steps
    return saved, ck


def train(cfg) -> dict:
    """Run one training job from a :class:`PlannerTrainConfig` (or a mapping of its settings). Returns a summary."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import AutoModelForImageTextToText, AutoProcessor, get_cosine_schedule_with_warmup

    cfg = build(PlannerTrainConfig, cfg)
    if cfg.output_dir is None:
        cfg = dataclasses.replace(cfg, output_dir=f"runs/planner/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    cfg, resume_from = resolve_resume(cfg)
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tcfg, pcfg, dcfg = cfg.train, cfg.planner, cfg.data
    if tcfg.num_threads:
        torch.set_num_threads(int(tcfg.num_threads))
    seed = int(tcfg.seed)
    set_seed(seed)

    wb = cfg.wandb
    use_wandb = bool(wb.enabled)
    if use_wandb:
        os.environ.setdefault("WANDB_MODE", wb.mode)
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        try:
            import wandb  # noqa: F401
        except ImportError:
            log.warning("wandb is not installed; logging to the console only")
            use_wandb = False
    accelerator = Accelerator(
        gradient_accumulation_steps=int(tcfg.grad_accum),
        mixed_precision=tcfg.mixed_precision,
        log_with="wandb" if use_wandb else None,
        project_dir=str(run_dir),
        cpu=tcfg.device == "cpu",
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    main = accelerator.is_main_process

    # --- data ---
    data_path = Path(dcfg.path)
    if dcfg.source == STAGE1 and not data_path.exists():
        s1 = dcfg.stage1
        if main:
            log.info("building the stage-1 dataset in %s", data_path)
            build_stage1_dataset(
                data_path,
                list(s1.train_images),
                int(s1.n_train),
                list(s1.val_images) if s1.val_images is not None else None,
                int(s1.n_val),
                seed=int(s1.seed),
                crop=crop_sizes(s1.crop),
                k_weights=tuple(s1.k_weights),
                tools=dict(pcfg.tools) if pcfg.tools else None,
                camera=float(s1.camera),
                p_snow=float(s1.p_snow),
                targets=s1.targets,
            )
        accelerator.wait_for_everyone()
    train_ds, val_ds = load_splits(data_path, float(dcfg.val_fraction), seed, dcfg.max_val)
    if dcfg.max_train and len(train_ds) > int(dcfg.max_train):
        train_ds = train_ds.select(range(int(dcfg.max_train)))
    if dcfg.replay.path:
        train_ds = mix_replay(train_ds, dcfg.replay.path, float(dcfg.replay.ratio), seed)
        log.info("training on %d examples (new data + %s replayed)", len(train_ds), dcfg.replay.path)

    # --- model ---
    if main:  # the main process builds or extends the base; the others then find it made
        base, meta = prepare_base(pcfg, run_dir)
    accelerator.wait_for_everyone()
    if not main:
        base, meta = prepare_base(pcfg, run_dir)
    view = ViewConfig(**(dataclasses.asdict(pcfg.view) if pcfg.view is not None else meta.get("view") or {"layout": "none"}))
    # lazily, as transformers itself: registers the degradation detector as a vision model type
    from . import perception_tower  # noqa: F401

    processor = AutoProcessor.from_pretrained(base, **(pcfg.processor_kwargs or {}))
    dtype = getattr(torch, pcfg.dtype)
    net = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype)
    checkpointing = tcfg.gradient_checkpointing if tcfg.gradient_checkpointing is not None else pcfg.gradient_checkpointing
    if checkpointing:
        net.gradient_checkpointing_enable()
        if hasattr(net, "enable_input_require_grads"):
            net.enable_input_require_grads()
    finetune = pcfg.finetune
    new_ids = extension_token_ids(meta, processor.tokenizer)
    if new_ids and main and finetune.mode == "lora":
        log.info("LoRA: the %d tokens added to the vocabulary are trained too (%s)", len(new_ids), finetune.lora.new_tokens)
    net = apply_finetune_mode(net, finetune, new_ids)
    trainable, total = count_parameters(net)
    if main:
        log.info("model %s: %s parameters, %s trainable (%s)", base, f"{total:,}", f"{trainable:,}", finetune.mode)

    eos = eos_ids(net, processor.tokenizer)
    collate = PlannerCollator(processor, view, eos, augment=bool(dcfg.augment), seed=seed)
    val_collate = PlannerCollator(processor, view, eos, augment=False)
    bs = int(tcfg.batch_size)
    loader = DataLoader(
        train_ds,
        batch_size=bs,
        shuffle=True,
        collate_fn=collate,
        num_workers=int(tcfg.num_workers),
        drop_last=len(train_ds) > bs,
    )
    val_loader = (
        DataLoader(val_ds, batch_size=bs, shuffle=False, collate_fn=val_collate)
        if val_ds is not None and len(val_ds)
        else None
    )

    params = [p for p in net.parameters() if p.requires_grad]
    lr = float(tcfg.lr if tcfg.lr is not None else pcfg.lr)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=float(tcfg.weight_decay), betas=(0.9, 0.98))
    ga = int(tcfg.grad_accum)
    steps_per_epoch = max(1, math.floor(len(loader) / ga))
    max_steps = int(tcfg.max_steps or steps_per_epoch * int(tcfg.epochs))
    warmup = int(tcfg.warmup_steps if tcfg.warmup_steps is not None else 0.05 * max_steps)
    sched = get_cosine_schedule_with_warmup(opt, warmup, max_steps)
    net, opt, loader, sched = accelerator.prepare(net, opt, loader, sched)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)

    step = 0
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        step = int(json.loads((resume_from / "state.json").read_text())["step"])
        if main:
            log.info("resumed from %s at step %d", resume_from, step)
    elif main:
        _save_yaml(run_dir / "config.yaml", cfg)

    if use_wandb:
        accelerator.init_trackers(
            wb.project,
            config=to_dict(cfg),
            init_kwargs={"wandb": {"dir": str(run_dir), "name": run_dir.name}},
        )

    def val_loss() -> float | None:
        if val_loader is None:
            return None
        net.eval()
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for batch in val_loader:
                out = net(**batch)
                k = int((batch["labels"] != -100).sum())
                tot += float(out.loss) * k
                cnt += k
        net.train()
        return tot / max(cnt, 1)

    def save_checkpoint():
        ck = run_dir / "checkpoints" / f"step_{step:07d}"
        accelerator.save_state(str(ck))
        if main:
            _save_yaml(ck / "config.yaml", cfg)
            (ck / "state.json").write_text(json.dumps({"step": step, "time": time.time()}) + "\n")
            keep = int(tcfg.keep_checkpoints)
            old = sorted((run_dir / "checkpoints").glob("step_*"))[:-keep] if keep > 0 else []
            for o in old:
                shutil.rmtree(o, ignore_errors=True)

    history = []
    eval_every = int(tcfg.eval_every or 0)
    save_every = int(tcfg.save_every or 0)
    log_every = int(tcfg.log_every)
    max_gen = int(tcfg.eval_generate)
    tools = dict(pcfg.tools) if pcfg.tools else None
    pbar = tqdm(total=max_steps, initial=step, disable=not main, desc="train planner", dynamic_ncols=True)
    net.train()
    epoch = step // steps_per_epoch
    running, running_n, t0 = 0.0, 0, time.perf_counter()
    while step < max_steps:
        loader.set_epoch(epoch)
        skip = (step - epoch * steps_per_epoch) * ga
        epoch_loader = accelerator.skip_first_batches(loader, skip) if skip > 0 else loader
        for batch in epoch_loader:
            with accelerator.accumulate(net):
                out = net(**batch)
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and tcfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, float(tcfg.max_grad_norm))
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            running += float(out.loss.detach())
            running_n += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            pbar.update(1)
            if step % log_every == 0 or step == max_steps:
                rec = {
                    "step": step,
                    "loss": running / running_n,
                    "lr": sched.get_last_lr()[0],
                    "s_per_step": (time.perf_counter() - t0) / log_every,
                }
                running, running_n, t0 = 0.0, 0, time.perf_counter()
                pbar.set_postfix(loss=f"{rec['loss']:.4f}")
                accelerator.log({"train/loss": rec["loss"], "train/lr": rec["lr"]}, step=step)
                history.append(rec)
            if eval_every and (step % eval_every == 0 or step == max_steps):
                rec = {"step": step, "val_loss": val_loss()}
                if main and val_ds is not None and max_gen:
                    m = evaluate_generation(
                        accelerator.unwrap_model(net), processor, view, val_ds, max_gen, tools
                    )
                    rec.update({k: v for k, v in m.items() if k != "examples"})
                    log.info(
                        "step %d: %s",
                        step,
                        json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()}),
                    )
                    for ex in m["examples"][:3]:
                        log.info("  pred %-60s target %s", ex["pred"], ex["target"])
                accelerator.log(
                    {f"val/{k}": v for k, v in rec.items() if isinstance(v, int | float) and k != "step"},
                    step=step,
                )
                history.append(rec)
            if save_every and step % save_every == 0:
                save_checkpoint()
            if step >= max_steps:
                break
        epoch += 1
    pbar.close()
    if save_every and not (run_dir / "checkpoints" / f"step_{step:07d}").exists():
        save_checkpoint()

    final = run_dir / "final"
    if main:
        save_final(accelerator.unwrap_model(net), processor, base, final, view, cfg, history)
        if cfg.export:
            export_planner(final, Path(cfg.export))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    summary = {"final": str(final), "steps": step, "history": history}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def save_final(net, processor, base: str, final: Path, view: ViewConfig, cfg, history) -> Path:
    """A folder VLMPlanner loads: full weights, or base (when local) + ``adapter/``."""
    from peft import PeftModel

    if final.exists():
        shutil.rmtree(final)
    final.mkdir(parents=True)
    cfg = build(PlannerTrainConfig, cfg)
    validation = (f"{cfg.data.path}: its validation split, else {cfg.data.val_fraction:.0%} of its examples held out"
                  + (f" (stage-1 photos: {VALIDATION_RULE})" if cfg.data.source == STAGE1 else ""))
    extra = {
        "trained": True,
        "train_config": to_dict(cfg),
        "validation": validation,
        "last": history[-1] if history else None,
        "tools_at_training": cfg.planner.tools,
    }
    base_meta = read_meta(base) if Path(base).is_dir() else {}
    extra = {**{k: v for k, v in base_meta.items() if k not in ("version", "view")}, **extra, "trained": True}
    if isinstance(net, PeftModel):
        net.save_pretrained(final / "adapter")
        base_path = Path(base)
        if base_path.is_dir():  # a local base (the built default): ship it next to the adapter
            for f in base_path.iterdir():
                if f.is_file():
                    shutil.copy2(f, final / f.name)
            cfg_path = final / "adapter" / "adapter_config.json"
            ac = json.loads(cfg_path.read_text())
            ac["base_model_name_or_path"] = ".."  # resolved relative to the adapter by VLMPlanner
            cfg_path.write_text(json.dumps(ac, indent=2))
        else:
            processor.save_pretrained(final)
        write_meta(final / "adapter", view, extra)
    else:
        net.save_pretrained(final)
        processor.save_pretrained(final)
    write_meta(final, view, extra)
    return final


def export_planner(final: Path, dest: Path) -> Path:
    """Copy a trained planner folder to ``dest`` (e.g. restoreagent/assets/planner)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(final, dest)
    for f in dest.rglob("*"):  # package data: readable by everyone (safetensors writes 0600)
        if f.is_file():
            f.chmod(0o644)
    return dest
