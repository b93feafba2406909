"""Train the plan scorer on the labeled search data: every evaluated candidate's score, not only the best.

Two stages, both resumable:

1. **Features** (``table``): each compact labeled record is rebuilt (photo -> crop -> the recorded
   degradation, checked against its hash), the detector looks at the degraded crop once, and the
   record's candidates (plans with their PSNR and SSIM) are kept beside the image features. The
   table is appended to as the labeled dataset grows; records already in it are not redone.
2. **Training**: per sample, the candidates' balanced scores (z-scores of PSNR and SSIM among that
   sample's candidates, as the benchmark ranks them) are the target. ``listwise``: cross-entropy
   between the softmax of the predicted scores and the softmax of the targets at temperature
   ``tau`` (the best candidates dominate); ``pairwise``: a logistic loss on every pair of one
   sample's candidates, weighted by how far apart they score. Validation: held-out photos (a hash
   of the photo's name), never a benchmark split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from ...errors import RestoreAgentError

log = logging.getLogger(__name__)

SAMPLE_FIELDS = ("sample_id", "image", "n_degradations", "val")


def is_validation_photo(photo: str, every: int) -> bool:
    """Held-out photos: a stable hash of the photo's folder-relative name (not its position in a list)."""
    if every <= 0:
        return False
    return int(hashlib.sha256(photo.encode()).hexdigest()[:8], 16) % every == 0


def _shard_features(args) -> tuple[dict, dict]:
    """The features of one shard's records that are wanted (``args``: shard, wanted sample ids,
    roots, val_every, detector folder): a unit of work for a worker process."""
    import pyarrow.parquet as pq

    from ...labeling.compact import decode_scores, rebuild
    from ...perception import default_detector
    from .features import image_features

    shard, wanted, roots, val_every, detector_folder = args
    detector = default_detector(detector_folder)
    new = {k: [] for k in SAMPLE_FIELDS}
    cands = {"sample_id": [], "plan": [], "psnr": [], "ssim": []}
    photos: dict = {}  # photos repeat within a shard's neighbourhood, not across the dataset
    for row in pq.read_table(shard).to_pylist():
        sid = int(row["sample_id"])
        if sid not in wanted:
            continue
        _, degraded = rebuild(row, roots, photos=photos)
        record = json.loads(row["degradation_record"])
        new["sample_id"].append(sid)
        new["image"].append(image_features(detector, degraded))
        new["n_degradations"].append(len(record["degradations"]))
        new["val"].append(is_validation_photo(row["photo"], val_every))
        candidates, _ = decode_scores(row)
        for steps, metrics in candidates:
            cands["sample_id"].append(sid)
            cands["plan"].append(", ".join(s.text() for s in steps))
            cands["psnr"].append(metrics["psnr"])
            cands["ssim"].append(metrics["ssim"])
    return new, cands


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core


def build_table(labels, images, cache, val_every: int = 10, detector_folder=None, limit: int | None = None,
                progress: bool = True, workers: int = 1) -> dict:
    """The features of every finished labeled record (appended to ``cache``, an .npz); returns the table.

    Shards are the unit of work: with ``workers`` > 1 they go to that many processes, and the
    cache is written after each finished shard's batch, so an interrupted run keeps what it did."""
    from tqdm.auto import tqdm

    from ...labeling.compact import finished_samples, photo_roots
    from ...labeling.shards import data_files, shard_range

    cache = Path(cache)
    table = load_table(cache) if cache.exists() else None
    done = set(table["sample_id"].tolist()) if table else set()
    n = finished_samples(labels)
    if limit is not None:
        n = min(n, int(limit))
    if n == 0:
        raise RestoreAgentError(f"{labels}: no finished labeled shard (make some with `restoreagent job label-compact`)")
    roots = photo_roots(labels, images)
    jobs = []
    for f in data_files(labels):
        a, b = shard_range(f)
        wanted = {i for i in range(a, min(b, n)) if i not in done}
        if wanted:
            jobs.append((str(f), wanted, roots, val_every, detector_folder))
    bar = tqdm(total=sum(len(j[1]) for j in jobs), desc="ranker features", unit="sample", disable=not progress)

    def add(parts) -> None:
        nonlocal table
        new = {k: [] for k in SAMPLE_FIELDS}
        cands = {"sample_id": [], "plan": [], "psnr": [], "ssim": []}
        for part_new, part_cands in parts:
            for k in new:
                new[k] += part_new[k]
            for k in cands:
                cands[k] += part_cands[k]
        if not new["sample_id"]:
            return
        more = {
            "sample_id": np.asarray(new["sample_id"], np.int64),
            "image": np.stack(new["image"]).astype(np.float32),
            "n_degradations": np.asarray(new["n_degradations"], np.int8),
            "val": np.asarray(new["val"], bool),
            "cand_sample": np.asarray(cands["sample_id"], np.int64),
            "cand_plan": np.asarray(cands["plan"]),
            "cand_psnr": np.asarray(cands["psnr"], np.float32),
            "cand_ssim": np.asarray(cands["ssim"], np.float32),
        }
        table = more if table is None else {k: np.concatenate([table[k], more[k]]) for k in more}
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, **table)
        tmp.replace(cache)

    group = max(1, int(workers)) * 8  # shards per cache write
    if workers <= 1:
        for a in range(0, len(jobs), group):
            parts = []
            for job in jobs[a : a + group]:
                parts.append(_shard_features(job))
                bar.update(len(job[1]))
            add(parts)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) as pool:
            for a in range(0, len(jobs), group):
                parts = []
                for job, part in zip(jobs[a : a + group], pool.map(_shard_features, jobs[a : a + group])):
                    parts.append(part)
                    bar.update(len(job[1]))
                add(parts)
    bar.close()
    if table is None:
        raise RestoreAgentError(f"{labels}: no labeled record could be read")
    return table


def load_table(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def subset(table: dict, fraction: float, seed: int = 0) -> dict:
    """A random ``fraction`` of the training samples (validation samples all kept): the scaling curve."""
    if fraction >= 1.0:
        return table
    rng = np.random.default_rng(seed)
    train_ids = table["sample_id"][~table["val"]]
    keep_train = set(rng.choice(train_ids, size=max(1, int(round(fraction * len(train_ids)))), replace=False).tolist())
    keep = np.array([(v or (s in keep_train)) for s, v in zip(table["sample_id"], table["val"])])
    ids = set(table["sample_id"][keep].tolist())
    ckeep = np.array([s in ids for s in table["cand_sample"]])
    out = {k: table[k][keep] for k in SAMPLE_FIELDS}
    out.update({k: table[k][ckeep] for k in ("cand_sample", "cand_plan", "cand_psnr", "cand_ssim")})
    return out


def balanced_targets(psnr: np.ndarray, ssim: np.ndarray) -> np.ndarray:
    """RestoreAgent's balanced score of one sample's candidates (z-scores of PSNR + SSIM among them)."""
    out = np.zeros(len(psnr), np.float64)
    for x in (psnr.astype(np.float64), ssim.astype(np.float64)):
        sd = x.std()
        if sd > 1e-12:
            out += (x - x.mean()) / sd
    return out


class Packed:
    """Samples as padded (N, C) candidate index / target / mask arrays over unique plan feature rows.

    ``negatives``: per sample, that many pipelines the labeler did *not* evaluate (drawn from every
    order and tool choice of its tasks) join its list with a target ``margin`` below its worst
    evaluated candidate. The beam labeler pruned them as worse, and without them the scorer never
    sees the bulk of the space it must rank at planning time (every pipeline of the set).
    ``real`` marks the evaluated candidates (the only ones measured).
    """

    def __init__(self, table: dict, encoder, negatives: int = 0, margin: float = 1.0, seed: int = 0):
        from ...plan import parse_plan
        from ...search import default_toolset
        from .features import all_pipelines

        index = {int(s): i for i, s in enumerate(table["sample_id"])}
        per: list[list[int]] = [[] for _ in table["sample_id"]]
        for j, s in enumerate(table["cand_sample"]):
            per[index[int(s)]].append(j)
        rng = np.random.default_rng(seed)
        pools: dict[tuple, list[str]] = {}
        entries: list[list[tuple[str, float, bool]]] = []
        for js in per:
            if len(js) < 2:
                entries.append([])
                continue
            js = np.asarray(js)
            texts = [str(t) for t in table["cand_plan"][js]]
            target = balanced_targets(table["cand_psnr"][js], table["cand_ssim"][js])
            ent = [(t, float(v), True) for t, v in zip(texts, target)]
            if negatives:
                tasks = tuple(sorted(parse_plan(texts[0], check_tools=False).tasks))
                if tasks not in pools:
                    pools[tasks] = [p.text() for p in all_pipelines(default_toolset(tasks))]
                seen = set(texts)
                unseen = [p for p in pools[tasks] if p not in seen]
                low = float(target.min()) - margin
                for k in rng.choice(len(unseen), size=min(negatives, len(unseen)), replace=False):
                    ent.append((unseen[k], low, False))
            entries.append(ent)
        uniq = sorted({t for ent in entries for t, _, _ in ent})
        plans = [parse_plan(t, check_tools=False) for t in uniq]
        keep = np.array([encoder.knows(p) for p in plans], bool)
        self.plan_features = encoder.encode([p for p, k in zip(plans, keep) if k])
        row_of = {t: r for t, r in zip(np.asarray(uniq)[keep], range(int(keep.sum())))}
        entries = [[e for e in ent if e[0] in row_of] for ent in entries]
        c = max(1, max(len(e) for e in entries))
        n = len(entries)
        self.plan = np.zeros((n, c), np.int64)
        self.target = np.zeros((n, c), np.float32)
        self.mask = np.zeros((n, c), bool)
        self.real = np.zeros((n, c), bool)
        for i, ent in enumerate(entries):
            if sum(e[2] for e in ent) < 2:
                continue
            for k, (t, v, real) in enumerate(ent):
                self.plan[i, k] = row_of[t]
                self.target[i, k] = v
                self.mask[i, k] = True
                self.real[i, k] = real
        self.image = table["image"]
        self.val = table["val"]
        self.usable = self.real.sum(1) >= 2


def listwise_loss(pred, target, mask, tau: float):
    import torch

    neg = torch.finfo(pred.dtype).min / 4
    logp = torch.log_softmax(pred.masked_fill(~mask, neg), dim=1)
    q = torch.softmax((target / tau).masked_fill(~mask, neg), dim=1)
    return -(q * logp.masked_fill(~mask, 0.0)).sum(1).mean()


def pairwise_loss(pred, target, mask):
    import torch

    dp = pred[:, :, None] - pred[:, None, :]
    dt = target[:, :, None] - target[:, None, :]
    valid = mask[:, :, None] & mask[:, None, :] & (dt > 1e-3)
    w = dt.clamp(max=4.0) * valid
    return (torch.nn.functional.softplus(-dp) * w).sum() / w.sum().clamp(min=1e-6)


def scores_of(model, packed: Packed, rows: np.ndarray, device="cpu"):
    """Predicted scores (len(rows), C) of the candidates of samples ``rows``."""
    import torch

    img = torch.from_numpy(packed.image[rows]).to(device)
    idx = packed.plan[rows]
    n, c = idx.shape
    feats = torch.from_numpy(packed.plan_features[idx.reshape(-1)]).to(device)
    return model(img.repeat_interleave(c, 0), feats).view(n, c)


def evaluate(model, packed: Packed, rows: np.ndarray) -> dict:
    """On samples ``rows``: how often the top-scored candidate is the best one, its regret and ranking."""
    import torch

    hits, regrets, ranks = [], [], []
    with torch.inference_mode():
        for a in range(0, len(rows), 256):
            r = rows[a : a + 256]
            pred = scores_of(model, packed, r).numpy()
            for i, row in enumerate(r):
                m = packed.real[row]
                t = packed.target[row][m]
                p = pred[i][m]
                pick = int(np.argmax(p))
                hits.append(float(t[pick] >= t.max() - 1e-6))
                regrets.append(float(t.max() - t[pick]))
                ranks.append(100.0 * float(np.sum(t > t[pick] + 1e-9)) / len(t))
    return {"top1": float(np.mean(hits)), "regret": float(np.mean(regrets)), "ranking": float(np.mean(ranks)), "n": len(rows)}


def train_ranker(cfg, progress: bool = True) -> dict:
    """The ``train-ranker`` job: features table (appended), then the scorer, exported to ``cfg.export``."""
    import torch
    from tqdm.auto import tqdm

    from ...search import default_toolset
    from ...tasks import TASKS
    from .features import PlanEncoder
    from .model import PlanScorerNet, ScorerConfig
    from .weights import save_ranker

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    table = build_table(cfg.labels, cfg.images, cfg.table, val_every=cfg.val_every, limit=cfg.limit, progress=progress,
                        workers=cfg.workers)
    table = subset(table, cfg.fraction, seed=cfg.seed)
    encoder = PlanEncoder.from_toolset(default_toolset(TASKS))
    packed = Packed(table, encoder, negatives=cfg.negatives, margin=cfg.margin, seed=cfg.seed)
    train_rows = np.flatnonzero(packed.usable & ~packed.val)
    val_rows = np.flatnonzero(packed.usable & packed.val)
    if len(train_rows) == 0:
        raise RestoreAgentError("no labeled sample with two or more candidates to train on")
    model = PlanScorerNet(ScorerConfig(image_dim=packed.image.shape[1], plan_dim=encoder.dim, hidden=cfg.hidden, dropout=cfg.dropout))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(train_rows) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, steps), pct_start=0.1)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    history = []
    step = 0
    bar = tqdm(range(cfg.epochs), desc="ranker", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = rng.permutation(train_rows)
        losses = []
        for a in range(0, len(order), cfg.batch_size):
            rows = order[a : a + cfg.batch_size]
            pred = scores_of(model, packed, rows)
            target = torch.from_numpy(packed.target[rows])
            mask = torch.from_numpy(packed.mask[rows])
            loss = listwise_loss(pred, target, mask, cfg.tau) if cfg.loss == "listwise" else pairwise_loss(pred, target, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
        model.eval()
        entry = {"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - t0}
        if len(val_rows) and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            entry["val"] = evaluate(model, packed, val_rows)
        history.append(entry)
        bar.set_postfix(loss=f"{entry['loss']:.4f}", **({"val_top1": f"{entry['val']['top1']:.3f}"} if "val" in entry else {}))
        log.info("ranker epoch %d: %s", epoch + 1, entry)
    summary = {
        "train_samples": int(len(train_rows)),
        "val_samples": int(len(val_rows)),
        "fraction": cfg.fraction,
        "loss": cfg.loss,
        "history": history,
        "val": history[-1].get("val"),
        "train_eval": evaluate(model, packed, train_rows[:2000]),
        "seconds": time.perf_counter() - t0,
    }
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if cfg.export:
        save_ranker(cfg.export, model, encoder, info={k: v for k, v in summary.items() if k != "history"} | {"labels": str(cfg.labels)})
    return summary
