"""Gradient-boosted trees as the verifier, alone and averaged with the shipped MLP ensemble, on
verify-data's validation split (docs/benchmarks.md, "The twelfth session"). Not a dependency of
the project: ``pip install lightgbm`` first.

    python eval/verify_gbdt.py --data runs/verify/data_tone --seeds 0,1

The trees read the MLPs' inputs (each candidate's features and their departure from the
candidates' mean) and regress its balanced score among the candidates (lambdarank on graded
ranks was tried first: regret 0.92 against the MLPs' 0.77). The blend adds the two models'
scores, each standardised over a sample's candidates. Measured as ``eval/verify_variants.py``:
top-1, regret, the pick's PSNR gain over the scorer's own pick.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def _standardise(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    s = np.where(mask, scores, np.nan)
    return np.where(mask, (s - np.nanmean(s, 1, keepdims=True)) / (np.nanstd(s, 1, keepdims=True) + 1e-6), -np.inf)


def main(argv=None) -> int:
    import lightgbm as lgb

    from restoreagent.jobs.train_verifier import VerifierTrainConfig
    from restoreagent.planners.verify.data import load_rows
    from restoreagent.planners.verify.model import VerifierConfig
    from restoreagent.planners.verify.train import fit, measure, pack, predict

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", required=True, help="verify-data folder(s)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--leaves", type=int, default=31)
    ap.add_argument("--rounds", type=int, default=800)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = [r for folder in args.data for r in load_rows(folder)]
    cfg = VerifierTrainConfig()
    p = pack(rows, cfg.n_sets, cfg.per_set, consistency=cfg.consistency)
    x, mask = p.x.numpy(), p.mask.numpy()
    m = mask[..., None].astype(np.float32)
    z = np.concatenate([x, x - (x * m).sum(1, keepdims=True) / m.sum(1, keepdims=True)], -1)
    train, val = np.flatnonzero(~p.val), np.flatnonzero(p.val)
    trees = lgb.train(
        dict(objective="regression", num_leaves=args.leaves, learning_rate=0.03, min_data_in_leaf=80, bagging_fraction=0.8,
             bagging_freq=1, feature_fraction=0.5, lambda_l2=5.0, verbose=-1, num_threads=1, seed=0),
        lgb.Dataset(z[train][mask[train]], p.balanced[train][mask[train]]), args.rounds)
    s_trees = np.full(mask.shape, -np.inf, np.float32)
    s_trees[mask] = trees.predict(z[mask])
    print("| verifier | top-1 | regret | dB over the scorer's pick |\n|---|---|---|---|")

    def row(name, scores):
        r = measure(scores, p, val)
        print(f"| {name} | {100 * r['top1']:.1f}% | {r['regret']:.3f} | {r['psnr_gain_over_scorer']:+.2f} |", flush=True)

    row(f"trees ({args.leaves} leaves, {args.rounds} rounds)", s_trees)
    for seed in (int(s) for s in args.seeds.split(",")):
        mlp = fit(p, VerifierConfig(in_dim=x.shape[-1], hidden=cfg.hidden, members=cfg.members, dropout=cfg.dropout),
                  epochs=cfg.epochs, lr=cfg.lr, temperature=cfg.tau, weight_decay=cfg.weight_decay, seed=seed,
                  batch=cfg.batch, loss=cfg.loss)
        s_mlp = predict(mlp, p)
        row(f"the MLP ensemble (train-verifier's defaults), seed {seed}", s_mlp)
        row(f"its blend with the trees, seed {seed}", _standardise(s_mlp, mask) + _standardise(s_trees, mask))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
