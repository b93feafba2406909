"""Fit the verifier on :mod:`.data`'s samples and measure it on the held-out photos' samples.

The measure is the one a planner is judged by, in the frame of the candidates it tried: how often
its pick is the best of them, the pick's PSNR, and its gain over the plan scorer's own pick for the
detector's set (candidate 0: what the ``ranker`` planner would have run).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .features import consistency_stats, verifier_features
from .model import VerifierConfig, VerifierNet


@dataclass
class Packed:
    x: torch.Tensor  # (N, K, D)
    mask: torch.Tensor  # (N, K) bool
    psnr: np.ndarray  # (N, K), NaN where masked
    balanced: np.ndarray  # (N, K): z-scores of PSNR + SSIM among the image's kept candidates
    val: np.ndarray  # (N,) bool
    n_degradations: np.ndarray
    outs: torch.Tensor | None = None  # (N, K, 3, H, W) uint8: the outputs' pixels (pixel verifiers)
    inp: torch.Tensor | None = None  # (N, 3, H, W) uint8: the input's


def kept(row: dict, n_sets: int, per_set: int, prefixes: bool = False) -> np.ndarray:
    """The row's candidates a planner with these settings would try (a prefix goes with its parent)."""
    table = row["table"]
    keep = (table[:, 0] < n_sets) & (table[:, 2] < per_set)
    if not prefixes and "dropped" in row:
        keep &= row["dropped"] == 0
    return keep


def consistency_of(row: dict) -> np.ndarray:
    """A sample's :func:`.features.consistency_stats`: kept by verify-data, else computed from its pixels."""
    if "cons" in row:
        return row["cons"]
    return consistency_stats(list(row["out_px"].astype(np.float32) / 255), row["in_px"].astype(np.float32) / 255)


def pack(rows: list[dict], n_sets: int, per_set: int, embedding: bool = False, no_reference: bool = False,
         pixels: bool = False, consistency: bool = False, prefixes: bool = False) -> Packed:
    feats, keep = [], []
    for r in rows:
        emb = (r["out_emb"].astype(np.float32), r["in_emb"].astype(np.float32)) if embedding else (None, None)
        feats.append(verifier_features(r["table"], r["out_raw"], r["in_raw"], r["stats"], *emb,
                                       r["nr"] if no_reference else None, consistency_of(r) if consistency else None,
                                       r["dropped"] if prefixes else None))
        keep.append(kept(r, n_sets, per_set, prefixes))
    # The features are computed over every stored candidate; a narrower setting is a mask, then the
    # candidates are re-packed so that the model's context (the mean) sees the kept ones only.
    k = max(int(m.sum()) for m in keep)
    n, d = len(rows), feats[0].shape[1]
    x = np.zeros((n, k, d), np.float32)
    mask = np.zeros((n, k), bool)
    psnr = np.full((n, k), np.nan, np.float32)
    bal = np.full((n, k), np.nan, np.float32)
    for i, (r, f, m) in enumerate(zip(rows, feats, keep)):
        j = int(m.sum())
        x[i, :j], mask[i, :j] = f[m], True
        met = r["metrics"][m].astype(np.float64)
        psnr[i, :j] = met[:, 0]
        z = (met - met.mean(0)) / np.where(met.std(0) > 1e-9, met.std(0), np.inf)
        bal[i, :j] = z.sum(1)
    outs = inp = None
    if pixels:
        h, w = rows[0]["in_px"].shape[:2]
        outs = torch.zeros((n, k, 3, h, w), dtype=torch.uint8)
        inp = torch.from_numpy(np.stack([r["in_px"] for r in rows])).permute(0, 3, 1, 2).contiguous()
        for i, (r, m) in enumerate(zip(rows, keep)):
            outs[i, : int(m.sum())] = torch.from_numpy(r["out_px"][m]).permute(0, 3, 1, 2)
    return Packed(torch.from_numpy(x), torch.from_numpy(mask), psnr, bal, np.array([bool(r["val"]) for r in rows]),
                  np.array([len(str(r["truth"]).split("+")) for r in rows]), outs, inp)


def pixel_batch(p: Packed, rows, crop: int | None = None, gen: torch.Generator | None = None):
    """The rows' pixels as float tensors in [0, 1]; training takes one random ``crop`` square (the
    same for every candidate and the input) and a random flip."""
    if p.outs is None:
        return None, None
    outs, inp = p.outs[rows], p.inp[rows]
    if crop is not None:
        h, w = inp.shape[-2:]
        y = int(torch.randint(0, h - crop + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - crop + 1, (1,), generator=gen))
        outs, inp = outs[..., y : y + crop, x : x + crop], inp[..., y : y + crop, x : x + crop]
        if bool(torch.randint(0, 2, (1,), generator=gen)):
            outs, inp = outs.flip(-1), inp.flip(-1)
    return outs.float() / 255.0, inp.float() / 255.0


def measure(scores: np.ndarray, p: Packed, rows: np.ndarray) -> dict:
    pick = np.nanargmax(np.where(p.mask.numpy()[rows], scores[rows], -np.inf), axis=1)
    idx = np.arange(len(rows))
    bal, psnr = p.balanced[rows], p.psnr[rows]
    best = np.nanmax(bal, axis=1)
    return {
        "n": int(len(rows)),
        "top1": float(np.mean(bal[idx, pick] >= best - 1e-6)),
        "regret": float(np.mean(best - bal[idx, pick])),
        "psnr": float(np.mean(psnr[idx, pick])),
        "psnr_gain_over_scorer": float(np.mean(psnr[idx, pick] - psnr[:, 0])),
        "psnr_oracle_gain": float(np.mean(np.nanmax(psnr, axis=1) - psnr[:, 0])),
    }


def fit(p: Packed, cfg: VerifierConfig | None = None, epochs: int = 60, lr: float = 2e-3, temperature: float = 0.5,
        weight_decay: float = 1e-3, seed: int = 0, progress: bool = False, crop: int = 64, batch: int = 128,
        loss: str = "listwise") -> VerifierNet:
    """``loss``: ``listwise`` fits the softmax of the scores to the softmax of the balanced scores at
    ``temperature``; ``regret`` minimises the expected regret of a pick drawn from the scores'
    softmax, so a catastrophic candidate costs what it loses, not one place in a ranking."""
    if loss not in ("listwise", "regret"):
        raise ValueError(f"loss={loss!r}: use listwise or regret")
    torch.manual_seed(seed)
    tr = np.flatnonzero(~p.val)
    cfg = cfg or VerifierConfig(in_dim=p.x.shape[-1])
    model = VerifierNet(cfg)
    flat = p.x[tr][p.mask[tr]]
    model.mean.copy_(flat.mean(0))
    model.std.copy_(flat.std(0).clamp(min=1e-3))
    target = torch.from_numpy(np.nan_to_num(p.balanced, nan=-1e9) / temperature).float()
    target = torch.softmax(target.masked_fill(~p.mask, float("-inf")), dim=1)
    bal = torch.from_numpy(np.nan_to_num(p.balanced, nan=0.0)).float()
    regret = (bal.masked_fill(~p.mask, float("-inf")).max(1, keepdim=True).values - bal).masked_fill(~p.mask, 0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * (-(-len(tr) // batch)))
    gen = torch.Generator().manual_seed(seed)
    from tqdm import tqdm

    for _ in tqdm(range(epochs), desc="verifier", unit="epoch", disable=not progress):
        model.train()
        for b in torch.randperm(len(tr), generator=gen).split(batch):
            rows = torch.from_numpy(tr)[b]
            outs, inp = pixel_batch(p, rows, crop if cfg.pixels else None, gen)
            s = model.member_scores(p.x[rows], p.mask[rows], outs, inp).masked_fill(~p.mask[rows], float("-inf"))
            logp = torch.log_softmax(s, dim=-1).masked_fill(~p.mask[rows], 0.0)
            if loss == "regret":
                objective = (logp.exp() * regret[rows]).sum(-1).mean()
            else:
                objective = -(target[rows] * logp).sum(-1).mean()
            opt.zero_grad()
            objective.backward()
            opt.step()
            sched.step()
    return model.eval()


def predict(model: VerifierNet, p: Packed, batch: int = 64) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for b in torch.arange(len(p.x)).split(batch):
            out.append(model(p.x[b], p.mask[b], *pixel_batch(p, b)).numpy())
    return np.concatenate(out)


def train_verifier(cfg) -> dict:
    """The ``train-verifier`` job (:class:`restoreagent.jobs.train_verifier.VerifierTrainConfig`)."""
    import json
    from pathlib import Path

    from ...errors import RestoreAgentError
    from ...imageio import atomic_write_text
    from .data import load_rows
    from .weights import save_verifier

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rows, made = [], []
    for folder in cfg.data:
        rows += load_rows(folder)
        m = Path(folder) / "manifest.json"
        made.append(json.loads(m.read_text()) if m.is_file() else {})
    if not rows:
        raise RestoreAgentError(f"{', '.join(cfg.data)}: no verifier data (make it: restoreagent job verify-data out=FOLDER)")
    for m in made:
        if cfg.n_sets > m.get("n_sets", cfg.n_sets) or cfg.per_set > m.get("per_set", cfg.per_set):
            raise RestoreAgentError(f"data made with {m['n_sets']} sets x {m['per_set']} pipelines per sample; "
                                    f"n_sets={cfg.n_sets} per_set={cfg.per_set} needs more")
    for flag, key in (("embedding", "out_emb"), ("no_reference", "nr"), ("pixels", "out_px"), ("consistency", "cons"),
                      ("prefixes", "dropped")):
        if getattr(cfg, flag) and any(key not in r and (key != "cons" or "out_px" not in r) for r in rows):
            raise RestoreAgentError(f"{', '.join(cfg.data)}: made before the data kept {key!r}; {flag}=true needs data "
                                    "made since (restoreagent job verify-data out=NEW_FOLDER)")
    p = pack(rows, cfg.n_sets, cfg.per_set, cfg.embedding, cfg.no_reference, cfg.pixels, cfg.consistency, cfg.prefixes)
    model = fit(p, VerifierConfig(in_dim=p.x.shape[-1], hidden=cfg.hidden, members=cfg.members, dropout=cfg.dropout,
                                  embedding=cfg.embedding, no_reference=cfg.no_reference, consistency=cfg.consistency,
                                  prefixes=cfg.prefixes,
                                  pixels=cfg.pixels,
                                  pixel_width=cfg.pixel_width, pixel_dim=cfg.pixel_dim),
                epochs=cfg.epochs, lr=cfg.lr, temperature=cfg.tau, weight_decay=cfg.weight_decay, seed=cfg.seed,
                progress=True, crop=cfg.crop, batch=cfg.batch, loss=cfg.loss)
    s = predict(model, p)
    scorer_pick = np.zeros_like(s)
    scorer_pick[:, 0] = 1.0  # candidate 0: the scorer's best pipeline for the detector's set
    val, train = np.flatnonzero(p.val), np.flatnonzero(~p.val)
    summary = {
        "data": list(cfg.data), "samples": len(rows), "train_samples": int(len(train)), "val_samples": int(len(val)),
        "candidates_mean": float(p.mask.sum(1).float().mean()),
        "val": measure(s, p, val) if len(val) else None,
        "val_scorer_pick": measure(scorer_pick, p, val) if len(val) else None,
        "train": measure(s, p, train),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
    }
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    if cfg.export:
        save_verifier(cfg.export, model, cfg.n_sets, cfg.per_set,
                      info={"data": list(cfg.data), "val": summary["val"], "val_scorer_pick": summary["val_scorer_pick"]})
    return summary
