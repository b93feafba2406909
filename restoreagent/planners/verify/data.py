"""The verifier's training data: for fresh labeled-style samples (a random crop of a train photo,
1-4 degradations in the default recipe's proportions), the candidates the verifying planner would
try, their outputs' features and their scores against the clean crop.

Samples come from the compact labeler's sample plan with another seed than the committed labels
(the plan scorer trained on those, so its ratings there would be optimistic). Shards of 100
samples (``shard_XXXXX.npz``) are written atomically and a run continues after the last finished
one, so a stopped build resumes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...jobs.train_verifier import VerifyDataConfig

METRICS = ("psnr", "ssim")


_STATE: dict = {}


def _init_worker(cfg: VerifyDataConfig):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from ...jobs.label import CompactLabelConfig
    from ...labeling.compact import _CompactPlan
    from ...perception import default_detector
    from ...scoring import Scorer
    from ..ranker import RankerPlanner

    _STATE["plan"] = _CompactPlan(CompactLabelConfig(images=tuple(cfg.images), samples=cfg.samples, seed=cfg.seed,
                                                     crop=cfg.crop, metrics=METRICS))
    _STATE["detector"] = default_detector(cfg.detector)
    _STATE["ranker"] = RankerPlanner(model=cfg.ranker, detector=_STATE["detector"])
    _STATE["scorer"] = Scorer(METRICS)
    _STATE["cfg"] = cfg


def tone_curve(clean: np.ndarray, tone: float, seed: int, i: int) -> tuple[np.ndarray, float]:
    """Sample ``i``'s clean crop through a gamma curve x^g, log(g) uniform in [-tone, tone] (drawn from
    ``seed`` and ``i`` alone, so a resumed build makes the same samples). The train folders are
    bright, highlight-rich scenes; without this the verifier learns their exposure as a prior (the
    mild brightening curve is best on 64% of their low-light samples, on 40% of cbsd68's) instead of
    reading each output."""
    if tone <= 0:
        return clean, 1.0
    g = float(np.exp(np.random.default_rng([seed, i, 7]).uniform(-tone, tone)))
    return np.clip(np.asarray(clean, np.float32), 0.0, 1.0) ** g, g


def verify_sample(i: int) -> dict:
    from ...executor import run_plans
    from ...labeling.labeler import degrade_sample
    from ..ranker.features import features_from_raw
    from ..ranker.train import is_validation_photo
    from .candidates import likely_sets, propose, with_prefixes
    from .features import candidate_table, consistency_stats, detector_view, image_stats, no_reference_stats

    cfg, det, ranker, scorer = _STATE["cfg"], _STATE["detector"], _STATE["ranker"], _STATE["scorer"]
    p = _STATE["plan"].payload(i)
    p["clean"], gamma = tone_curve(p["clean"], cfg.tone, cfg.seed, i)
    degraded, record, _, _ = degrade_sample(p)
    logits, sev, feats = det.raw(degraded)
    sets = likely_sets(det, logits, n_sets=cfg.n_sets)
    cands = propose(ranker, features_from_raw(logits, sev, feats), sets, cfg.per_set)
    if cfg.prefixes:
        cands = with_prefixes(cands, det, logits)
    outs = run_plans(degraded, [c.plan for c in cands])
    views = [detector_view(det, o) for o in outs]
    photo = f"{p['root']}/{p['path']}"
    optional = {}  # kept only when asked: pixels, which candidates are prefixes
    if cfg.pixels:
        from ...imageio import to_uint8

        optional = {"in_px": to_uint8(degraded), "out_px": np.stack([to_uint8(o) for o in outs])}
    if cfg.prefixes:
        optional["dropped"] = np.array([c.dropped for c in cands], np.int8)
    return {
        "sample_id": i,
        "val": is_validation_photo(photo, cfg.val_every),
        "truth": "+".join(record["degradations"]),
        "tone_gamma": np.float32(gamma),
        "sets": "|".join("+".join(c.set.degradations) for c in cands),
        "plans": "|".join(",".join(s.text() for s in c.plan.steps) for c in cands),
        "table": candidate_table(cands),
        "out_raw": np.stack([v[0] for v in views]),
        "in_raw": np.concatenate([logits, sev]).astype(np.float32),
        "out_emb": np.stack([v[1] for v in views]).astype(np.float16),
        "in_emb": feats.mean(0).cpu().numpy().astype(np.float16),
        "stats": image_stats(outs, degraded),
        "nr": no_reference_stats(outs, degraded),
        "cons": consistency_stats(outs, degraded),
        "metrics": np.asarray([[scorer(o, p["clean"])[m] for m in METRICS] for o in outs], np.float32),
        **optional,
    }


def _save_shard(path: Path, rows: list[dict]) -> None:
    arrays = {}
    for j, r in enumerate(rows):
        for k, v in r.items():
            arrays[f"{j}/{k}"] = np.asarray(v)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def load_rows(folder) -> list[dict]:
    rows = []
    for f in sorted(Path(folder).glob("shard_*.npz")):
        z = np.load(f)
        by: dict[int, dict] = {}
        for key in z.files:
            j, _, k = key.partition("/")
            v = z[key]
            by.setdefault(int(j), {})[k] = v.item() if v.ndim == 0 else v
        rows += [by[j] for j in sorted(by)]
    return rows


def build(cfg: VerifyDataConfig, progress: bool = True) -> Path:
    """Make samples ``0..cfg.samples-1`` into ``cfg.out``, continuing after its last finished shard."""
    import json
    from multiprocessing import get_context

    from tqdm import tqdm

    from ...errors import RestoreAgentError
    from ...imageio import atomic_write_text

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    identity = {"seed": cfg.seed, "crop": cfg.crop, "n_sets": cfg.n_sets, "per_set": cfg.per_set,
                "images": [Path(f).name for f in cfg.images], "val_every": cfg.val_every, "shard_size": cfg.shard_size}
    if cfg.pixels:
        identity["pixels"] = True
    if cfg.prefixes:
        identity["prefixes"] = True
    if cfg.tone:
        identity["tone"] = cfg.tone
    manifest = out / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()) != identity:
        raise RestoreAgentError(f"{out}: made with other settings ({manifest}); use another folder")
    atomic_write_text(manifest, json.dumps(identity, indent=1))
    n_shards = -(-cfg.samples // cfg.shard_size)
    todo = [s for s in range(n_shards) if not (out / f"shard_{s:05d}.npz").exists()]
    bar = tqdm(total=len(todo) * cfg.shard_size, desc="verify data", unit="sample", disable=not progress)
    if cfg.workers > 1:
        pool = get_context("spawn").Pool(cfg.workers, initializer=_init_worker, initargs=(cfg,))
        imap = pool.imap
    else:
        _init_worker(cfg)
        pool, imap = None, map
    try:
        for s in todo:
            ids = range(s * cfg.shard_size, min(cfg.samples, (s + 1) * cfg.shard_size))
            rows = []
            for r in imap(verify_sample, ids):
                rows.append(r)
                bar.update(1)
            _save_shard(out / f"shard_{s:05d}.npz", rows)
    finally:
        if pool is not None:
            pool.close()
    return out
