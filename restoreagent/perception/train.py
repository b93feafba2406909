"""Training the degradation detector: fresh samples, resumable checkpoints, calibration, export.

    python train/train_perception.py --config configs/smoke/train-perception.yaml   # the train-perception job

The run folder holds ``checkpoint/`` (model + optimiser + step + elapsed time; a stopped run
continues from it with the same command) and, at the end, ``detector/``: the calibrated
detector (``model.safetensors`` in float16 + ``detector.json``), which is what ships in
``restoreagent/assets/perception``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..imageio import atomic_write_text, list_images
from ..splits import split_by_name_hash
from .calibration import calibrate, expected_calibration_error, fit_platt, fit_thresholds
from .config import PerceptionTrainConfig
from .data import SampleStream, fixed_set, tiles_to_tensor
from .labels import LABELS, SEVERITY_PARAMS
from .model import DegradationNet

log = logging.getLogger(__name__)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _lr_factor(progress: float, step: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def losses(model, batch, device, severity_weight: float):
    x = tiles_to_tensor(batch["tiles"].to(device, non_blocking=True))
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    presence = batch["presence"].to(device)
    sev_t, mask = batch["severity"].to(device), batch["mask"].to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits, sev = model(x)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), presence)
    sev_err = (torch.nn.functional.smooth_l1_loss(sev.float(), sev_t, reduction="none", beta=0.1) * mask).sum()
    sev_loss = sev_err / mask.sum().clamp(min=1.0)
    return bce + severity_weight * sev_loss, bce, sev_loss


@torch.no_grad()
def predict(model, batches, device) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    logits, sevs = [], []
    for b in batches:
        x = tiles_to_tensor(b["tiles"].to(device))
        lg, sv = model(x)
        logits.append(lg.float().cpu().numpy())
        sevs.append(sv.float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(sevs)


def _save_checkpoint(folder: Path, model, opt, step: int, elapsed: float, cfg):
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    torch.save({"optimizer": opt.state_dict(), "step": step, "elapsed": elapsed}, tmp / "state.pt")
    (tmp / "config.json").write_text(json.dumps(asdict(cfg), indent=1, default=list))
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        folder.rename(old)
        tmp.rename(folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(folder)


def train(cfg: PerceptionTrainConfig) -> Path:
    """Train (or continue) a run; returns the exported detector folder."""
    torch.manual_seed(cfg.seed)
    device = _device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = list_images(cfg.photos)
    train_photos, val_photos = split_by_name_hash(photos, cfg.val_fraction)
    if not train_photos or not val_photos:
        raise ValueError(f"need photos for both splits; found {len(train_photos)} train and {len(val_photos)} val")
    log.info("photos: %d train, %d validation", len(train_photos), len(val_photos))

    model = DegradationNet(cfg.net).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed = 0, 0.0
    ckpt = out / "checkpoint"
    if cfg.resume and (ckpt / "model.safetensors").exists():
        model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(device)))
        if (ckpt / "state.pt").exists():
            state = torch.load(ckpt / "state.pt", map_location=device, weights_only=True)
            opt.load_state_dict(state["optimizer"])
            step, elapsed = int(state["step"]), float(state["elapsed"])
            log.info("resumed at step %d (%.0f s trained)", step, elapsed)
        else:  # weights only (e.g. brought back from another machine): a new schedule starts from them
            log.info("starting from the weights in %s (no optimiser state)", ckpt)
    elif cfg.init:  # a new run from a trained detector's weights (float16 in a detector folder)
        state = load_file(str(Path(cfg.init) / "model.safetensors"))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        log.info("starting from the detector in %s", cfg.init)

    wandb_run = None
    if cfg.wandb != "disabled":
        import wandb

        os.environ.setdefault("WANDB_MODE", cfg.wandb)
        wandb_run = wandb.init(project="restoreagent-perception", dir=str(out), config=asdict(cfg), resume="allow")

    # A resumed run draws new samples (seeded by its step), never the ones it already saw.
    stream = SampleStream(train_photos, cfg.spec, cfg.batch_size, seed=cfg.seed * 1_000_003 + step)
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers > 0 else None,
    )
    history = []
    metrics_path = out / "train_log.jsonl"
    t_start = time.time() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, desc="perception", unit="step", mininterval=5)
    model.train()
    for batch in loader:
        if step >= cfg.steps:
            break
        elapsed = time.time() - t_start
        progress = step / cfg.steps
        if cfg.time_budget_s > 0:
            if elapsed >= cfg.time_budget_s:
                break
            progress = max(progress, elapsed / cfg.time_budget_s)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _lr_factor(progress, step, cfg.warmup)
        loss, bce, sev = losses(model, batch, device, cfg.severity_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0:
            row = {"step": step, "loss": loss.item(), "bce": bce.item(), "severity": sev.item(),
                   "lr": opt.param_groups[0]["lr"], "elapsed_s": round(time.time() - t_start, 1),
                   "samples": step * cfg.batch_size}
            history.append(row)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            if wandb_run is not None:
                wandb_run.log(row, step=step)
        if step % cfg.checkpoint_every == 0:
            _save_checkpoint(ckpt, model, opt, step, time.time() - t_start, cfg)
    bar.close()
    elapsed = time.time() - t_start
    _save_checkpoint(ckpt, model, opt, step, elapsed, cfg)
    log.info("trained %d steps (%d samples) in %.0f s", step, step * cfg.batch_size, elapsed)

    detector_dir = export_calibrated(model, cfg, val_photos, device, out / "detector", step=step, elapsed=elapsed)
    if cfg.export:
        shutil.copytree(detector_dir, cfg.export, dirs_exist_ok=True)
    if wandb_run is not None:
        wandb_run.finish()
    return detector_dir


def export_calibrated(model, cfg, val_photos, device, folder: Path, step: int, elapsed: float) -> Path:
    """Fit calibration and thresholds on the validation split and write the detector folder."""
    val = fixed_set(val_photos, cfg.spec, cfg.val_samples, seed=cfg.seed + 12345)
    logits, sev = predict(model, val, device)
    targets = np.concatenate([b["presence"].numpy() for b in val])
    sev_t = np.concatenate([b["severity"].numpy() for b in val])
    mask = np.concatenate([b["mask"].numpy() for b in val])
    a, b = fit_platt(logits, targets)
    probs = calibrate(logits, a, b)
    thr = fit_thresholds(probs, targets)
    pred = probs >= thr
    exact = float((pred == (targets > 0.5)).all(axis=1).mean())
    n_deg = targets[:, : len(LABELS)].sum(axis=1)
    by_k = {int(k): float((pred == (targets > 0.5)).all(axis=1)[n_deg == k].mean()) for k in np.unique(n_deg)}
    sev_mae = {f"{n}.{k}": float(np.abs(sev[:, j] - sev_t[:, j])[mask[:, j] > 0].mean())
               for j, (n, k, _) in enumerate(SEVERITY_PARAMS) if mask[:, j].any()}
    summary = {
        "validation": {
            "samples": int(len(targets)),
            "photos": [p.name for p in val_photos],
            "exact_set": exact,
            "exact_set_by_count": by_k,
            "ece": expected_calibration_error(probs, targets),
            "severity_mae": sev_mae,
        },
        "trained_steps": step,
        "trained_samples": step * cfg.batch_size,
        "train_seconds": round(elapsed, 1),
    }
    meta = {
        "format": "restoreagent-detector/1",
        "labels": list(LABELS),
        "severity_params": [[n, k] for n, k, _ in SEVERITY_PARAMS],
        "net": cfg.net.to_dict(),
        "tile": cfg.spec.tile,
        "platt_a": [round(float(v), 6) for v in a],
        "platt_b": [round(float(v), 6) for v in b],
        "thresholds": [float(v) for v in thr],
        "train": {"config": asdict(cfg), **summary},
    }
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().to(torch.float16) if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    atomic_write_text(folder / "detector.json", json.dumps(meta, indent=1, default=list) + "\n")
    log.info("validation exact-set accuracy %.3f (%s)", exact, by_k)
    return folder
