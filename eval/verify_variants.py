"""Verifier variants on verify-data's validation split, each trained with several seeds (the
``train-verifier`` job's own ``pack`` and ``fit``; nothing exported): top-1, regret and the pick's
PSNR gain over the scorer's own pick, mean over the seeds.

    python eval/verify_variants.py --data runs/verify/data_px --seeds 0,1,2 \\
        --variant consistency=false,loss=listwise --variant loss=listwise --variant consistency=false \\
        --variant "" --variant no_reference=true --variant epochs=100 --variant hidden=128

A variant is comma-separated ``train-verifier`` settings over its defaults ("" = the defaults).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch


def _parse(variant: str) -> dict:
    out = {}
    for item in filter(None, variant.split(",")):
        key, _, value = item.partition("=")
        out[key.strip()] = {"true": True, "false": False}.get(value.strip().lower(), value.strip())
    return out


def main(argv=None) -> int:
    from restoreagent.jobs.train_verifier import VerifierTrainConfig
    from restoreagent.planners.verify.data import load_rows
    from restoreagent.planners.verify.model import VerifierConfig
    from restoreagent.planners.verify.train import fit, measure, pack, predict

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", required=True, help="verify-data folder(s)")
    ap.add_argument("--variant", action="append", default=[], help="settings over the defaults (repeat)")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for folder in args.data:
        rows += load_rows(folder)
    fields = {f.name: f.type for f in dataclasses.fields(VerifierTrainConfig)}
    print("| variant | top-1 | regret | dB over the scorer's pick |\n|---|---|---|---|")
    for variant in args.variant or [""]:
        settings = _parse(variant)
        unknown = [k for k in settings if k not in fields]
        if unknown:
            raise SystemExit(f"--variant {variant!r}: unknown setting {unknown[0]!r}")
        cfg = VerifierTrainConfig(**{k: (int(v) if fields[k] in ("int", int) else float(v) if fields[k] in ("float", float) else v)
                                     for k, v in settings.items()})
        p = pack(rows, cfg.n_sets, cfg.per_set, cfg.embedding, cfg.no_reference, cfg.pixels, cfg.consistency, cfg.prefixes)
        val = np.flatnonzero(p.val)
        results = []
        for seed in (int(s) for s in args.seeds.split(",")):
            model = fit(p, VerifierConfig(in_dim=p.x.shape[-1], hidden=cfg.hidden, members=cfg.members, dropout=cfg.dropout),
                        epochs=cfg.epochs, lr=cfg.lr, temperature=cfg.tau, weight_decay=cfg.weight_decay, seed=seed,
                        batch=cfg.batch, loss=cfg.loss)
            results.append(measure(predict(model, p), p, val))
        mean = {k: float(np.mean([r[k] for r in results])) for k in ("top1", "regret", "psnr_gain_over_scorer")}
        print(f"| {variant or 'defaults'} | {100 * mean['top1']:.1f}% | {mean['regret']:.3f} | {mean['psnr_gain_over_scorer']:+.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
