"""Training the project's learned tools on pairs made by the project's own generator.

A tool learns one degradation inside a severity range (``ranges`` narrows the generator's
``PARAM_RANGES``, e.g. ``{"sigma": [5, 15]}`` for a light-noise denoiser). Pairs are made once
into an in-memory pool: a clean training photo, randomly rescaled (0.5-1x, so textures come at
several scales) and cropped to ``pool_crop`` px, degraded whole with
:func:`restoreagent.degradations.apply_degradation` (so haze depth, rain streaks and blur
borders look as they do on full photos); training then draws random ``patch`` px windows with
flips and transposes. Validation pairs come from held-out training photos (every
``val_every``-th file), never from the dev split.

``train_tool(cfg)`` is the logic behind ``train/train_tool.py`` (the train-tool job,
:mod:`restoreagent.jobs.train_tool`; one declaration per tool in ``restoreagent/catalog/learned/``): resumable checkpoints (``torch.save`` of plain tensors, loaded back with
``weights_only=True``), a progress bar, wandb offline, and at the end the export to a
safetensors file (float16 weights, architecture and provenance in its metadata) that the tool
registry loads.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from tqdm.auto import tqdm

from ...catalog.learned import learned_tool
from ...config import build, to_dict
from ...degradations import PARAM_RANGES, apply_degradation
from ...degradations.params import CAMERA_PARAMS, is_int_range, sample_camera_params
from ...imageio import atomic_write_text, list_images, load_image
from ...jobs.train_tool import ToolTrainConfig
from ...splits import split_files
from . import guide_functions, resolve_guide, stack_guides
from .export import save_tool_weights
from .nets import build_network, count_parameters
from .runner import resolve_device

log = logging.getLogger("restoreagent.tools.learned")


# --- pairs ----------------------------------------------------------------------------------------


def sample_in_ranges(degradation: str, ranges: dict | None, rng: np.random.Generator) -> dict:
    """Parameters of ``degradation`` drawn from ``PARAM_RANGES`` with some ranges narrowed."""
    out = {}
    for key, r in PARAM_RANGES[degradation].items():
        lo, hi = (ranges or {}).get(key, r)
        if is_int_range(r):
            out[key] = int(rng.integers(int(lo), int(hi) + 1))
        else:
            out[key] = float(rng.uniform(lo, hi))
    return out


def random_view(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random rescale (0.5-1x, never below ``size``) then a random ``size`` px square crop
    (the content at many pixel scales; the learned tools' and the fusion network's training views)."""
    h, w = image.shape[:2]
    lo = max(0.5, size / min(h, w))
    s = float(rng.uniform(lo, 1.0)) if lo < 1.0 else lo
    if abs(s - 1.0) > 1e-3:
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        pil = Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((nw, nh), Image.BICUBIC)
        image = np.asarray(pil, dtype=np.float32) / 255.0
        h, w = nh, nw
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return image[y : y + size, x : x + size]


def make_pairs(
    files: list[Path],
    degradation: str,
    ranges: dict | None,
    n: int,
    crop: int,
    seed: int,
    desc: str = "pairs",
    guides: list[dict] | None = None,
    camera: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (degraded, clean) uint8 pairs, (n, crop, crop, C) and (n, crop, crop, 3); same seed, same pairs.

    With ``guides`` the degraded side also carries each guide tool's output as extra channels (C > 3).
    ``camera``: probability that a pair's degradation also gets camera-realism parameters
    (``CAMERA_PARAMS``: signal-dependent, channel- and spatially correlated noise, ...), so the tool
    learns real cameras' degradations too; 0 (the default) draws nothing and keeps the old pairs.
    """
    fns = guide_functions(guides)
    rng = np.random.default_rng(seed)
    cache: dict[Path, np.ndarray] = {}
    deg = np.empty((n, crop, crop, 3 * (1 + len(fns))), np.uint8)
    clean = np.empty((n, crop, crop, 3), np.uint8)
    for i in tqdm(range(n), desc=desc, leave=False, disable=None):
        f = files[int(rng.integers(len(files)))]
        if f not in cache:
            cache[f] = load_image(f)
        view = random_view(cache[f], crop, rng)
        params = sample_in_ranges(degradation, ranges, rng)
        if camera > 0 and degradation in CAMERA_PARAMS and rng.random() < camera:
            params.update(sample_camera_params(degradation, rng))
        out = apply_degradation(view, degradation, params, rng=np.random.default_rng(rng.integers(2**63)))
        deg[i] = np.round(np.clip(stack_guides(out, fns), 0, 1) * 255)
        clean[i] = np.round(view * 255)
    return deg, clean


def random_batch(
    deg: np.ndarray,
    clean: np.ndarray,
    batch: int,
    patch: int,
    rng: np.random.Generator,
    augment: bool,
    transpose: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random windows; flips and (if ``transpose``) transposes applied to both images."""
    idx = rng.integers(0, len(deg), batch)
    size = deg.shape[1]
    xs, ys = [], []
    for i in idx:
        y0, x0 = rng.integers(0, size - patch + 1, 2)
        a = deg[i, y0 : y0 + patch, x0 : x0 + patch]
        b = clean[i, y0 : y0 + patch, x0 : x0 + patch]
        if augment:
            if rng.random() < 0.5:  # horizontal flip: every generator degradation is symmetric in x
                a, b = a[:, ::-1], b[:, ::-1]
            if transpose and rng.random() < 0.5:  # transposes: not for haze (depth grows upwards)
                a, b = a.transpose(1, 0, 2), b.transpose(1, 0, 2)
            if transpose and rng.random() < 0.5:
                a, b = a[::-1], b[::-1]
        xs.append(a)
        ys.append(b)
    to = lambda v: torch.from_numpy(np.stack(v).astype(np.float32) / 255.0).permute(0, 3, 1, 2)  # noqa: E731
    return to(xs), to(ys)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.inference_mode()
def evaluate(model, deg: np.ndarray, clean: np.ndarray, device) -> dict:
    """Mean PSNR of the input (and of the last guide) and of the output over the validation pairs."""
    model.eval()
    pin, pguide, pout = [], [], []
    for a, b in zip(deg, clean):
        x = torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None].to(device)
        y = torch.from_numpy(b.astype(np.float32) / 255).permute(2, 0, 1)[None].to(device)
        pin.append(psnr(x[:, :3], y))
        pguide.append(psnr(x[:, -3:], y))
        pout.append(psnr(model(x), y))
    model.train()
    out = {"val_psnr_in": float(np.mean(pin)), "val_psnr_out": float(np.mean(pout))}
    if x.shape[1] > 3:
        out["val_psnr_guide"] = float(np.mean(pguide))
    return out


# --- the training run -----------------------------------------------------------------------------


def _checkpoint_path(out: Path) -> Path:
    return out / "checkpoint.pt"


def train_tool(cfg) -> dict:
    """Train one tool from a :class:`~restoreagent.jobs.train_tool.ToolTrainConfig` (or a mapping of its
    settings; ``tool`` names a declaration, restoreagent/catalog/learned/NAME.yaml); returns a summary."""
    cfg = build(ToolTrainConfig, cfg)
    decl = learned_tool(cfg.tool)
    data, opt = cfg.data, cfg.train
    out = Path(cfg.output_dir.format(tool=decl.name))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(opt.seed)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = resolve_device(cfg.device)

    files = list_images(list(data.images))
    train_files, val_files = split_files(files, data.val_every)
    deg_name, ranges = decl.degradation, dict(decl.ranges)
    t0 = time.perf_counter()
    guides = [resolve_guide(g) for g in (cfg.guides if cfg.guides is not None else decl.guides)]
    pool = make_pairs(train_files, deg_name, ranges, data.n_pairs, data.pool_crop, data.seed, "train pairs", guides,
                      camera=data.camera)
    val_src = val_files or train_files
    val = make_pairs(val_src, deg_name, ranges, data.n_val, data.val_crop, data.seed + 1, "val pairs", guides,
                     camera=data.camera)
    log.info("made %d train / %d val pairs in %.0f s", len(pool[0]), len(val[0]), time.perf_counter() - t0)

    arch_kwargs = {**decl.arch_kwargs, **(cfg.arch_kwargs or {}), **({"guides": len(guides)} if guides else {})}
    model = build_network(decl.arch, **arch_kwargs).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=opt.lr)
    steps = int(opt.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim,
        lambda s: (
            min(1.0, (s + 1) / max(1, opt.warmup_steps))
            * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * s / steps)))
        ),
    )
    step, history = 0, []
    ckpt = _checkpoint_path(out)
    if cfg.resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        step = int(state["step"])
        history = json.loads(state["history"])
        log.info("resumed %s at step %d", ckpt, step)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

    run = _wandb_run(cfg, decl.name, out)
    rng = np.random.default_rng([opt.seed, step])  # a resumed run draws fresh batches, reproducibly
    bar = tqdm(total=steps, initial=step, desc=f"train {decl.name}", disable=None)
    model.train()
    loss_avg = None
    while step < steps:
        x, y = random_batch(*pool, opt.batch_size, data.patch, rng, data.augment, data.transpose)
        x, y = x.to(device), y.to(device)
        loss = torch.sqrt((model(x) - y) ** 2 + 1e-6).mean()  # Charbonnier (smooth L1)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        step += 1
        loss_val = loss.item()
        loss_avg = loss_val if loss_avg is None else 0.98 * loss_avg + 0.02 * loss_val
        bar.update(1)
        bar.set_postfix(loss=f"{loss_avg:.4f}")
        if step % opt.eval_every == 0 or step == steps:
            rec = {"step": step, "loss": loss_avg, **evaluate(model, *val, device)}
            history.append(rec)
            bar.write(json.dumps(rec))
            if run:
                run.log(rec, step=step)
        if step % opt.save_every == 0 or step == steps:
            _atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optim": optim.state_dict(),
                    "sched": sched.state_dict(),
                    "step": step,
                    "history": json.dumps(history),
                },
                ckpt,
            )
    bar.close()
    final = history[-1] if history else evaluate(model, *val, device)
    meta = {
        "name": decl.name,
        "task": decl.task,
        "degradation": deg_name,
        "ranges": ranges,
        "arch": decl.arch,
        "arch_kwargs": arch_kwargs,
        "guides": guides,
        "steps": steps,
        "params": count_parameters(model),
        "data": [str(p) for p in data.images],
        "val": final,
        "validation": (f"every {data.val_every}th photo (sorted) of the train folders, held out" if val_files
                       else "pairs from the training photos (too few photos to hold any out)"),
    }
    target = Path(cfg.export.format(tool=decl.name)) if cfg.export else out / f"{decl.name}.safetensors"
    save_tool_weights(model, target, meta)
    summary = {**meta, "weights": str(target), "history": history}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    if run:
        run.finish()
    return summary


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _wandb_run(cfg: ToolTrainConfig, name: str, out: Path):
    """A wandb run in offline mode unless the user set WANDB_MODE; None if wandb is off."""
    if not cfg.wandb:
        return None
    try:
        import wandb
    except ImportError:  # the optional `web` extra
        log.warning("wandb is not installed (pip install 'restoreagent[tracking]'); logging to the console only")
        return None

    os.environ.setdefault("WANDB_MODE", "offline")
    return wandb.init(
        project="restoreagent-tools", name=name, dir=str(out), config=to_dict(cfg), reinit="finish_previous"
    )
