"""How well could one weight per candidate for the whole photo do, predicted from simple image
statistics? (docs/fusion.md, "Next".) A probe for the noise + JPEG specialist's global decision.

    python eval/fusion_global_mix.py --train 4000

Data: the fusion job's cached candidate sets (``data/fusion_candidates``; make them with the job
first): the noise + JPEG training sets and the 60 held-out-photo validation sets, the K = 4
candidates of ``run --fuse 4`` (the plan first). Per set, a small MLP maps statistics of the set to
4 softmax weights, one per candidate for the whole photo, trained to maximise the mean PSNR of the
mix (computed exactly from each set's Gram matrix). Statistics: the detector's presence logits and
severities of the degraded image (19), and the logs of the mean absolute differences between each
candidate and the plan (3) and between each candidate and the degraded input (4). Printed: the
median gain over the plan alone on the validation sets of the predicted mix with each group of
statistics, of the shipped specialist's per-pixel blend, and of the best whole-photo mix (knowing
the clean photo).
"""

import argparse
import glob

import numpy as np
import torch
from fusion import global_convex_optimum, psnr  # eval/fusion.py, beside this script

from restoreagent.fusion import fuse, load_fusion, weights_for_tasks
from restoreagent.perception import Detector

K = 4


def load(path):
    with np.load(path) as z:
        return (z["candidates"][:K].astype(np.float32) / 255, z["degraded"].astype(np.float32) / 255,
                z["clean"].astype(np.float32) / 255)


def statistics(det: Detector, cands, degraded) -> np.ndarray:
    logits, severities, _ = det.raw(degraded)
    diffs = [np.abs(c - cands[0]).mean() for c in cands[1:]] + [np.abs(c - degraded).mean() for c in cands]
    return np.concatenate([logits, severities, np.log(np.array(diffs) + 1e-4)])


def tensors(det, files):
    """(statistics, Gram matrices, candidate . clean, clean . clean): the mix's MSE for any weights w is
    w A w - 2 w b + c (per pixel and channel)."""
    out = [[], [], [], []]
    for f in files:
        cands, degraded, clean = load(f)
        m = cands.reshape(K, -1).astype(np.float64)
        y = clean.ravel().astype(np.float64)
        for lst, v in zip(out, (statistics(det, cands, degraded), m @ m.T / y.size, m @ y / y.size, y @ y / y.size), strict=True):
            lst.append(v)
    return [torch.tensor(np.array(v), dtype=torch.float64) for v in out]


def mix_mse(w, a, b, c):
    return torch.einsum("nk,nkl,nl->n", w, a, w) - 2 * (w * b).sum(1) + c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default="data/fusion_candidates")
    p.add_argument("--train", type=int, default=4000, help="training sets")
    p.add_argument("--steps", type=int, default=3000)
    args = p.parse_args()
    torch.set_num_threads(2)
    det = Detector()
    train = sorted(glob.glob(f"{args.cache}/train_c160_brackets5_v4/noise+jpeg_*.npz"))[: args.train]
    val = sorted(glob.glob(f"{args.cache}/val_c160_k4_v4/noise+jpeg_*.npz"))
    ft, at, bt, ct = tensors(det, train)
    fv, av, bv, cv = tensors(det, val)
    mu, sd = ft.mean(0), ft.std(0) + 1e-6
    plan = 10 * torch.log10(1 / mix_mse(torch.eye(K, dtype=torch.float64)[[0] * len(val)], av, bv, cv))
    print(f"{len(train)} training sets, {len(val)} validation sets (noise + JPEG, K = {K})")
    print("| whole-photo weights from | median gain over the plan |\n|---|---|")
    for cols, name in [(slice(None), "detector + differences"), (slice(19, None), "differences only"),
                       (slice(0, 19), "detector only")]:
        torch.manual_seed(0)
        xt, xv = ((ft - mu) / sd)[:, cols].float(), ((fv - mu) / sd)[:, cols].float()
        net = torch.nn.Sequential(torch.nn.Linear(xt.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                                  torch.nn.ReLU(), torch.nn.Linear(64, K))
        opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
        for _ in range(args.steps):
            idx = torch.randint(0, len(xt), (128,))
            w = torch.softmax(net(xt[idx]), 1).double()
            loss = torch.log10(mix_mse(w, at[idx], bt[idx], ct[idx]).clamp_min(1e-10)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            mixed = 10 * torch.log10(1 / mix_mse(torch.softmax(net(xv), 1).double(), av, bv, cv))
        print(f"| {name} | {float((mixed - plan).median()):+.3f} |")
    model = load_fusion(weights_for_tasks(["dejpeg", "denoise"]))
    rows = []
    for f in val:
        cands, degraded, clean = load(f)
        fused, _ = fuse(list(cands), degraded, model)
        rows.append((psnr(np.clip(fused, 0, 1), clean) - psnr(cands[0], clean), global_convex_optimum(list(cands), clean) - psnr(cands[0], clean)))
    shipped, best = np.median(np.array(rows), 0)
    print(f"| (the shipped specialist, per-pixel weights) | {shipped:+.3f} |")
    print(f"| (the best whole-photo weights, knowing the clean photo) | {best:+.3f} |")


if __name__ == "__main__":
    main()
