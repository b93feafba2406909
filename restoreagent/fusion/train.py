"""The ``train-fusion`` job (settings: :mod:`restoreagent.jobs.train_fusion`).

1. Candidate sets, made once into ``data.cache`` (one ``.npz`` per set, written atomically, so an
   interrupted run continues where it stopped; ``data.workers`` processes make them in parallel):
   a random crop of a train photo (randomly rescaled 0.5-1x), degraded by one of ``data.combos``
   (drawn with ``data.combo_weights``) with parameters drawn from the generator's ranges, then
   restored by the ``max_candidates`` plans ``run --fuse`` would blend (``data.plans: brackets``:
   the recipe's plan, its reordering and its strength brackets, :func:`candidate_plans`) or by
   every tool choice for the recipe's steps (``all``). The plan is always the first candidate.
   Validation sets come from held-out train photos, with the K = ``train.k_val`` candidates
   ``run --fuse`` would use. Never the dev split.
2. Training: random windows of random sets (the whole crop when ``train.patch`` equals
   ``data.crop``: then the image-level context sees what it sees at run time), a random subset of
   ``k_min``-``k_max`` of their candidates that always holds the plan (marked as the one to fall
   back on in ``prior_rate`` of the draws; ``run --fuse`` marks none), flips and transposes; the
   loss is the mean of log10 MSE over the windows (so the mean PSNR, which every window counts in
   alike) or L1. Resumable checkpoints (plain tensors, loaded with ``weights_only=True``), a
   progress bar, and the export to safetensors (float16).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from ..config import to_dict
from ..degradations import degrade
from ..errors import RestoreAgentError
from ..imageio import atomic_write_bytes, atomic_write_text, list_images, load_image
from ..jobs.train_fusion import FusionDataOptions, FusionMixConfig, FusionTrainConfig
from ..plan import Plan, parse_plan
from ..splits import DEV_SPLITS, split_files
from ..tasks import TASK_FOR_DEGRADATION
from ..tools.fixed_recipe import fixed_recipe
from ..tools.learned.training import random_view
from .candidates import CANDIDATES_VERSION, all_plans, candidate_plans, run_plans
from .model import FusionNet, count_parameters
from .weights import load_fusion, save_fusion_weights

log = logging.getLogger("restoreagent.fusion")


# --- candidate sets -------------------------------------------------------------------------------


def _u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def recipe_plan(degradations) -> Plan:
    """The fixed expert recipe for these degradations (the base plan of the candidate sets)."""
    return Plan.of(fixed_recipe([TASK_FOR_DEGRADATION[d] for d in degradations]))


def make_set(clean: np.ndarray, combo: str, seed: int, plans_for) -> dict:
    """One candidate set: the clean crop, its degraded version and every plan's result (uint8)."""
    degraded, record = degrade(clean, chain=combo, seed=seed)
    plans = plans_for(recipe_plan(record["degradations"]), seed)
    outputs = run_plans(degraded, plans)
    return {
        "clean": _u8(clean), "degraded": _u8(degraded), "candidates": np.stack([_u8(o) for o in outputs]),
        "plans": np.array([p.text() for p in plans]), "record": np.array(json.dumps(record)),
    }


def _make_one(job) -> None:
    """Make one candidate set file (in a worker process, or in this one)."""
    files, crop, seed, c, combo, i, p, plans_for = job
    rng = np.random.default_rng([seed, c, i])  # per set: the same set whatever was made before
    f = files[int(rng.integers(len(files)))]
    view = random_view(load_image(f), crop, rng)
    buf = io.BytesIO()
    np.savez_compressed(buf, **make_set(view, combo, int(rng.integers(2**31)), plans_for))
    atomic_write_bytes(p, buf.getvalue())


def _worker_init() -> None:
    torch.set_num_threads(1)


def make_sets(files: list[Path], combos, counts, crop: int, seed: int, folder: Path, plans_for,
              desc: str, workers: int = 1) -> list[Path]:
    """``counts[c]`` sets of combination ``c`` in ``folder`` (existing files are kept: resumable).

    ``plans_for(base_plan, k)`` names the plans of a set (a picklable callable when ``workers`` > 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, todo = [], []
    for c, (combo, n) in enumerate(zip(combos, counts, strict=True)):
        for i in range(n):
            p = folder / f"{combo.replace(',', '+')}_{i:05d}.npz"
            paths.append(p)
            if not p.exists():
                todo.append((files, crop, seed, c, combo, i, p, plans_for))
    if workers > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")  # no forked torch thread pools
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
            list(tqdm(pool.map(_make_one, todo, chunksize=1), total=len(todo), desc=desc, disable=None))
    else:
        for job in tqdm(todo, desc=desc, disable=None):
            _make_one(job)
    return paths


def load_sets(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        with np.load(p) as z:
            out.append({**{k: z[k] for k in ("clean", "degraded", "candidates", "plans")}, "combo": p.name.rsplit("_", 1)[0]})
    return out


def candidate_sets(cfg: FusionTrainConfig) -> tuple[list[dict], list[dict]]:
    train, val = candidate_set_paths(cfg.data, cfg.train.k_val)
    return load_sets(train), load_sets(val)


def candidate_set_paths(d: FusionDataOptions, k_val: int) -> tuple[list[Path], list[Path]]:
    """(train, validation) candidate-set files, made first where missing."""
    for folder in d.images:
        if Path(folder).name in DEV_SPLITS:
            raise RestoreAgentError(f"{folder}: a dev split ({', '.join(DEV_SPLITS)}) must not train the fusion")
    if d.plans not in ("brackets", "all"):
        raise RestoreAgentError(f"data.plans must be brackets or all, got {d.plans!r}")
    weights = list(d.combo_weights) if d.combo_weights else [1.0] * len(d.combos)
    if len(weights) != len(d.combos):
        raise RestoreAgentError(f"data.combo_weights needs one weight per combination ({len(d.combos)})")
    train_files, val_files = split_files(list_images(d.images), d.val_every)
    root = Path(d.cache)
    v = f"v{CANDIDATES_VERSION}"
    counts = [round(d.samples_per_combo * len(weights) * w / sum(weights)) for w in weights]
    train = make_sets(train_files, d.combos, counts, d.crop, d.seed, root / f"train_c{d.crop}_{d.plans}{d.max_candidates}_{v}",
                      PlansFor(d.plans, d.max_candidates), "candidate sets (train)", d.workers)
    val = make_sets(val_files or train_files, d.combos, [d.val_per_combo] * len(d.combos), d.crop, d.seed + 1,
                    root / f"val_c{d.crop}_k{k_val}_{v}", PlansFor("brackets", k_val),
                    "candidate sets (validation)", d.workers)
    return train, val


class PlansFor:
    """The plans of a candidate set (picklable, for the worker processes): the plan always first."""

    def __init__(self, kind: str, k: int):
        self.kind, self.k = kind, k

    def __call__(self, base: Plan, seed: int) -> list[Plan]:
        if self.kind == "brackets":
            return candidate_plans(base, self.k)
        plans = all_plans(base.tasks, limit=self.k, rng=np.random.default_rng(seed))
        return [base, *[p for p in plans if p != base]][: self.k]


# --- training -------------------------------------------------------------------------------------


def random_batch(sets: list[dict], batch: int, patch: int, k: int, rng: np.random.Generator, prior_rate: float = 0.8):
    """(candidates (B, k, 3, P, P), degraded (B, 3, P, P), clean (B, 3, P, P), prior (B, k)) windows with
    flips/transposes. The set's plan (its first candidate) is always drawn; ``prior`` marks it in
    ``prior_rate`` of the draws, else nothing is marked."""
    cs, ds, gs, ps = [], [], [], []
    for _ in range(batch):
        s = sets[int(rng.integers(len(sets)))]
        n = len(s["candidates"])
        pick = np.concatenate([[0], 1 + rng.choice(n - 1, size=min(k, n) - 1, replace=False)]).astype(int)
        if len(pick) < k:  # a set with fewer plans: repeat some (a repeated candidate changes no blend)
            pick = np.concatenate([pick, rng.choice(pick, size=k - len(pick))])
        pick = rng.permutation(pick)
        ps.append((pick == 0).astype(np.float32) * float(rng.random() < prior_rate))
        size = s["clean"].shape[0]
        y, x = rng.integers(0, size - patch + 1, 2)
        win = (slice(y, y + patch), slice(x, x + patch))
        c, d, g = s["candidates"][pick][:, win[0], win[1]], s["degraded"][win], s["clean"][win]
        if rng.random() < 0.5:
            c, d, g = c[:, :, ::-1], d[:, ::-1], g[:, ::-1]
        if rng.random() < 0.5:
            c, d, g = c.transpose(0, 2, 1, 3), d.transpose(1, 0, 2), g.transpose(1, 0, 2)
        if rng.random() < 0.5:
            c, d, g = c[:, ::-1], d[::-1], g[::-1]
        cs.append(np.ascontiguousarray(c))
        ds.append(np.ascontiguousarray(d))
        gs.append(np.ascontiguousarray(g))

    def t(a, perm):
        return torch.from_numpy(np.stack(a)).permute(*perm).float() / 255.0

    prior = torch.from_numpy(np.stack(ps))
    prior = prior / prior.sum(1, keepdim=True).clamp_min(1.0)  # a repeated plan: its marks share one
    return t(cs, (0, 1, 4, 2, 3)), t(ds, (0, 3, 1, 2)), t(gs, (0, 3, 1, 2)), prior


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of (B, 3, H, W) tensors in [0, 1]."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


@torch.no_grad()
def validate(model: FusionNet, sets: list[dict], mark_plan: bool = False) -> dict:
    """Median PSNR of the blend, of the per-set best candidate (oracle) and of the first (the plan);
    per combination, the median gains of the blend over the plan and over the oracle."""
    model.eval()
    fused, oracle, first, combos = [], [], [], []
    for s in sets:
        cand = torch.from_numpy(s["candidates"]).permute(0, 3, 1, 2).float()[None] / 255.0
        deg = torch.from_numpy(s["degraded"]).permute(2, 0, 1).float()[None] / 255.0
        clean = torch.from_numpy(s["clean"]).permute(2, 0, 1).float()[None] / 255.0
        prior = None
        if mark_plan:  # the plan marked as the one to fall back on
            prior = torch.zeros(1, cand.shape[1])
            prior[0, 0] = 1.0
        out, _ = model(cand, deg, prior)
        each = psnr(cand[0], clean.expand_as(cand[0]))
        fused.append(float(psnr(out, clean)[0]))
        oracle.append(float(each.max()))
        first.append(float(each[0]))
        combos.append(s.get("combo", ""))
    model.train()
    med = lambda v: float(np.median(v))  # noqa: E731
    gain = [f - o for f, o in zip(fused, oracle, strict=True)]
    out = {"psnr_fused": med(fused), "psnr_oracle": med(oracle), "psnr_plan": med(first), "gain_vs_oracle": med(gain)}
    for c in sorted(set(combos)):
        idx = [i for i, x in enumerate(combos) if x == c]
        out[f"{c}: gain_vs_plan"] = round(med([fused[i] - first[i] for i in idx]), 3)
        out[f"{c}: gain_vs_oracle"] = round(med([gain[i] for i in idx]), 3)
    return out


def train_fusion(cfg: FusionTrainConfig) -> dict:
    t = cfg.train
    if not 1 <= t.k_min <= t.k_max:
        raise RestoreAgentError(f"train.k_min must be between 1 and train.k_max, got {t.k_min} and {t.k_max}")
    if t.loss not in ("psnr", "l1"):
        raise RestoreAgentError(f"train.loss must be psnr or l1, got {t.loss!r}")
    if t.patch > cfg.data.crop:
        raise RestoreAgentError(f"train.patch ({t.patch}) must not exceed data.crop ({cfg.data.crop})")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    train_sets, val_sets = candidate_sets(cfg)
    torch.manual_seed(t.seed)
    if cfg.init:  # fine-tune: a fresh optimizer and schedule on trained weights
        model = copy.deepcopy(load_fusion(cfg.init)).train()
        log.info("initialised from %s", cfg.init)
    else:
        model = FusionNet(tuple(cfg.widths))
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    step, history = 0, []
    ckpt = out / "checkpoint.pt"
    if cfg.resume and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), json.loads(state["history"])
        log.info("resumed %s at step %d", ckpt, step)
    log.info("fusion network: %d parameters; %d train sets, %d validation sets", count_parameters(model),
             len(train_sets), len(val_sets))

    def lr_at(s: int) -> float:
        if s < t.warmup_steps:
            return t.lr * (s + 1) / t.warmup_steps
        return 0.5 * t.lr * (1 + math.cos(math.pi * min(1.0, (s - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps))))

    def save():
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "history": json.dumps(history)}, buf)
        atomic_write_bytes(ckpt, buf.getvalue())

    model.train()
    bar = tqdm(total=t.max_steps, initial=step, desc="train-fusion", disable=None)
    t0, first_step = time.perf_counter(), step
    while step < t.max_steps:
        rng = np.random.default_rng([t.seed, step])  # per step: a resumed run draws what it would have drawn
        k = int(rng.integers(t.k_min, t.k_max + 1))
        cand, deg, clean, prior = random_batch(train_sets, t.batch_size, t.patch, k, rng, t.prior_rate)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        fused, _ = model(cand, deg, prior)
        if t.loss == "psnr":
            loss = torch.log10(((fused - clean) ** 2).flatten(1).mean(1) + 1e-5).mean()
        else:
            loss = (fused - clean).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % 100 == 0:  # the bar is off in a log file
            log.info("step %d/%d loss %.4f (%.2f s/step)", step, t.max_steps, loss.item(),
                     (time.perf_counter() - t0) / max(1, step - first_step))
        if step % t.eval_every == 0 or step == t.max_steps:
            history.append({"step": step, **validate(model, val_sets, t.prior_rate > 0)})
            log.info("step %d: %s", step, history[-1])
        if step % t.save_every == 0 or step == t.max_steps:
            save()
    bar.close()
    final = history[-1] if history else validate(model, val_sets, t.prior_rate > 0)
    task_sets = {tuple(sorted({TASK_FOR_DEGRADATION[d] for d in c.split(",")})) for c in cfg.data.combos}
    meta = {
        # one combination's task set: a specialist (weights_for_tasks picks it by its file name)
        **({"tasks": list(next(iter(task_sets)))} if len(task_sets) == 1 else {}),
        "trained_on": list(cfg.data.images), "combos": list(cfg.data.combos), "steps": step,
        "validation": f"{len(val_sets)} sets from held-out train photos (every {cfg.data.val_every}th), K = {t.k_val}",
        "val": final, "parameters": count_parameters(model),
    }
    weights = Path(cfg.export) if cfg.export else out / "fusion.safetensors"
    save_fusion_weights(model, weights, meta)
    summary = {"weights": str(weights), "seconds": round(time.perf_counter() - t0, 1), **meta, "history": history}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary


# --- the whole-photo mix head (the train-fusion-mix job) ------------------------------------------


def _set_arrays(path: Path, k: int | None = None):
    with np.load(path) as z:
        return (z["candidates"][:k].astype(np.float32) / 255, z["degraded"].astype(np.float32) / 255,
                z["clean"].astype(np.float32) / 255, [parse_plan(str(p)) for p in z["plans"][:k]])


def train_fusion_mix(cfg: FusionMixConfig) -> dict:
    """Train the whole-photo mix head of one task set (:mod:`.mix`) on the candidate sets, pick its
    ``pixel_scale`` (how much of the U-Net's per-pixel logits to add) on the validation sets, export it."""
    from .fuse import fusion_weights
    from .mix import combine, exact_targets, mix_name, save_mix_head, set_stats, train_mix_head
    from .weights import shipped_weights, weights_for_tasks

    task_sets = {tuple(sorted({TASK_FOR_DEGRADATION[d] for d in c.split(",")})) for c in cfg.data.combos}
    if len(task_sets) != 1:
        raise RestoreAgentError(f"data.combos must share one task set (a head per task set), got {sorted(task_sets)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    train_paths, val_paths = candidate_set_paths(cfg.data, cfg.k_val)
    tasks = None  # the head's reference task order: the recipe plan's
    stats, targets, tools = [], [], set()
    for p in tqdm(train_paths, desc="set statistics", disable=None):
        cands, degraded, clean, plans = _set_arrays(p)
        tasks = tasks or plans[0].tasks
        stats.append(set_stats(cands, degraded, plans, tasks, cfg.detector))
        targets.append(exact_targets(cands, clean))
        tools |= {step.tool for plan in plans for step in plan}
    log.info("%d training sets (task order %s); training %d members", len(stats), tasks, cfg.members)
    head = train_mix_head(stats, targets, cfg.members, cfg.hidden, cfg.steps, cfg.lr, seed=cfg.seed)
    unet_path = Path(cfg.fusion_weights) if cfg.fusion_weights else weights_for_tasks(tasks)
    unet = load_fusion(unet_path)
    rows = []  # per validation set: PSNR of each candidate, the U-Net's blend, the head with each pixel scale
    for p in tqdm(val_paths, desc="validation", disable=None):
        cands, degraded, clean, plans = _set_arrays(p, cfg.k_val)
        logits = head.set_logits(set_stats(cands, degraded, plans, tasks, cfg.detector))
        pixel = fusion_weights(list(cands), degraded, unet)
        blends = [pixel] + [combine(logits, pixel, s) for s in cfg.pixel_scales]
        rows.append([_psnr(c, clean) for c in cands] + [_psnr(np.clip(np.einsum("khw,khwc->hwc", w, cands), 0, 1), clean)
                                                          for w in blends])
    a = np.array(rows)
    k = a.shape[1] - 1 - len(cfg.pixel_scales)
    best_fixed = int(a[:, :k].mean(0).argmax())
    med = lambda v: round(float(np.median(v)), 3)  # noqa: E731
    val = {"sets": len(rows), "k": k, "best_fixed": plans[best_fixed].text(),
           "unet_vs_best_fixed": med(a[:, k] - a[:, best_fixed]), "unet_vs_plan": med(a[:, k] - a[:, 0])}
    for i, s in enumerate(cfg.pixel_scales):
        val[f"head(pixel_scale={s})_vs_best_fixed"] = med(a[:, k + 1 + i] - a[:, best_fixed])
        val[f"head(pixel_scale={s})_vs_plan"] = med(a[:, k + 1 + i] - a[:, 0])
    # the scale whose blends gain most over the best fixed candidate (the yardstick), median over the sets
    pick = int(np.argmax([np.median(a[:, k + 1 + i] - a[:, best_fixed]) for i in range(len(cfg.pixel_scales))]))
    head.pixel_scale.fill_(float(cfg.pixel_scales[pick]))
    meta = {"tasks": list(tasks), "tools": sorted(tools), "trained_on": list(cfg.data.images), "combos": list(cfg.data.combos),
            "sets": len(stats), "unet": unet_path.name, "pixel_scale": cfg.pixel_scales[pick],
            "validation": f"{len(rows)} sets from held-out train photos (every {cfg.data.val_every}th), K = {k}", "val": val}
    path = Path(cfg.export) if cfg.export else shipped_weights().with_name(mix_name(tasks))
    save_mix_head(head, path, meta)
    summary = {"weights": str(path), "seconds": round(time.perf_counter() - t0, 1), **meta,
               "parameters": sum(p.numel() for p in head.parameters())}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    log.info("mix head -> %s: %s", path, val)
    return summary


def _psnr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((x - ref) ** 2)), 1e-12)))
