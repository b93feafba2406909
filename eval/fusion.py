"""The learned fusion against the candidates it blends (the table in docs/fusion.md).

    .venv/bin/python eval/fusion.py --images ../shared/data/images/cbsd68 --crop 256 --k 4 \
        --combos low_light,noise noise,jpeg [--weights FILE] [--json OUT.json] [--figure docs/img/fusion_example.png]

Every photo (centre crop ``crop``) is degraded by each combination (parameters drawn from the
generator's ranges, seed = photo index), restored by K candidate plans (the fixed expert recipe's
plan for its degradations, its reordering and its strength brackets: exactly what
``run --plan ... --fuse K`` runs) and blended by the fusion network (as ``run --fuse``). Every result is stored as 8 bits (as ``run`` saves it) and
scored by PSNR (dB, RGB, peak 1) against the clean crop. Per combination the table gives medians
over the photos of: the fused result; the per-photo best candidate (the oracle best-of-K, which
knows the clean photo); the best fixed candidate (the one plan with the highest mean PSNR over
the photos); the recipe's plan alone; the whole-photo convex optimum (the best convex weights,
one per candidate for the whole photo, fitted to the clean photo: what a blend whose weights do not
vary over the photo could reach); the 8 px block oracle (the best candidate picked per 8 x 8
block, knowing the clean photo: what picking at that scale could reach); the 8 px block convex
optimum (the best convex combination fitted per 8 x 8 block to the clean photo: what a blend whose
weights are constant over such a block could reach); and the median per-photo gain of the fusion over the oracle
and over the best fixed candidate (its mean in brackets), with the share of photos on which the
fusion beats the oracle. The blend is what ``run --fuse`` makes: the network it would use (the shipped
specialist of the plan's task set, else the general one; ``--weights`` names another) and the task
set's whole-photo mix head when one is shipped (``--no-mix``: the network alone).
"""

import argparse
import json
import statistics
import time

import numpy as np
from tqdm import tqdm

from restoreagent.degradations import degrade
from restoreagent.fusion import blend, candidate_plans, load_fusion, run_plans
from restoreagent.fusion.fuse import plan_weights
from restoreagent.fusion.train import recipe_plan
from restoreagent.imageio import center_crop, list_images, load_image, quantize


def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((x - ref) ** 2)), 1e-12)))


def block_oracle(outs, clean, block: int = 8) -> float:
    """PSNR of the best candidate chosen per ``block`` px square (knowing the clean photo): how much a
    blend that only picks could gain at that scale; a convex blend can also average."""
    err = np.stack([((o - clean) ** 2).mean(-1) for o in outs])
    h, w = (s - s % block for s in err.shape[1:])
    err = err[:, :h, :w].reshape(len(outs), h // block, block, w // block, block).mean((2, 4))
    return float(10 * np.log10(1.0 / max(float(err.min(0).mean()), 1e-12)))


def convex_fit(a: np.ndarray, y: np.ndarray, anchor: float) -> np.ndarray:
    """The convex combination of the columns of ``a`` closest to ``y`` (non-negative least squares,
    the weights held to sum 1 by a row weighted ``anchor``)."""
    from scipy.optimize import nnls

    wts, _ = nnls(np.vstack([a, anchor * np.ones((1, a.shape[1]))]), np.concatenate([y, [anchor]]))
    return a @ (wts / wts.sum())


def block_convex_optimum(outs, clean, block: int = 8) -> float:
    """PSNR of the best convex combination of the candidates fitted per ``block`` px square to the
    clean photo: what a convex blend with weights constant over that square could reach, knowing
    the answer."""
    h, w = clean.shape[:2]
    sq, n = 0.0, 0
    for i in range(0, h - h % block, block):
        for j in range(0, w - w % block, block):
            a = np.stack([o[i : i + block, j : j + block].ravel() for o in outs], 1).astype(np.float64)
            y = clean[i : i + block, j : j + block].ravel().astype(np.float64)
            sq += float(((convex_fit(a, y, 100.0) - y) ** 2).sum())
            n += y.size
    return float(10 * np.log10(1.0 / max(sq / n, 1e-12)))


def global_convex_optimum(outs, clean) -> float:
    """PSNR of the best convex combination with one weight per candidate for the whole photo (fitted
    to the clean photo as above): what a blend whose weights do not vary over the photo could reach."""
    a = np.stack([o.ravel() for o in outs], 1).astype(np.float64)
    return psnr(convex_fit(a, clean.ravel().astype(np.float64), 1000.0).reshape(clean.shape), clean)


def evaluate(files, combo: str, k: int, crop: int, model, keep_example: int | None = None, mix: bool = True):
    rows, example = [], None
    for i, f in enumerate(tqdm(files, desc=combo)):
        clean = quantize(center_crop(load_image(f), crop))
        degraded, record = degrade(clean, chain=combo, seed=i)
        degraded = quantize(degraded)
        plans = candidate_plans(recipe_plan(record["degradations"]), k)
        outs = [quantize(o) for o in run_plans(degraded, plans)]
        t0 = time.perf_counter()
        weights, used = plan_weights(outs, degraded, plans, model, mix)  # as run --fuse blends; the files it used
        fused = np.clip(blend(outs, weights), 0, 1)
        seconds = time.perf_counter() - t0
        rows.append({"photo": f.name, "fused": psnr(quantize(fused), clean), **used, "candidates": [psnr(o, clean) for o in outs],
                     "input": psnr(degraded, clean), "fuse_seconds": seconds, "block_oracle": block_oracle(outs, clean),
                     "block_convex": block_convex_optimum(outs, clean), "global_convex": global_convex_optimum(outs, clean)})
        if i == keep_example:
            example = {"clean": clean, "degraded": degraded, "outs": outs, "weights": weights, "fused": fused,
                       "plans": [p.text() for p in plans], "row": rows[-1]}
    return rows, [p.text() for p in plans], example


def summarise(rows, plans) -> dict:
    med = statistics.median
    cand = np.array([r["candidates"] for r in rows])
    fused = np.array([r["fused"] for r in rows])
    oracle = cand.max(1)
    best_fixed = int(cand.mean(0).argmax())
    return {
        "photos": len(rows), "k": cand.shape[1], "plans": plans,
        "input": med(r["input"] for r in rows),
        "fused": med(fused), "oracle": med(oracle), "best_fixed": med(cand[:, best_fixed]),
        "best_fixed_plan": plans[best_fixed], "plan": med(cand[:, 0]),
        "gain_vs_oracle": med(fused - oracle), "gain_vs_best_fixed": med(fused - cand[:, best_fixed]),
        "beats_oracle": float(np.mean(fused > oracle)),
        "fuse_seconds": med(r["fuse_seconds"] for r in rows),
        "block_oracle": med(r["block_oracle"] for r in rows),
        "block_oracle_vs_best_fixed": med(np.array([r["block_oracle"] for r in rows]) - cand[:, best_fixed]),
        "block_convex": med(r["block_convex"] for r in rows),
        "block_convex_vs_best_fixed": med(np.array([r["block_convex"] for r in rows]) - cand[:, best_fixed]),
        "global_convex": med(r["global_convex"] for r in rows),
        "global_convex_vs_best_fixed": med(np.array([r["global_convex"] for r in rows]) - cand[:, best_fixed]),
        "mean_gain_vs_best_fixed": float(np.mean(fused - cand[:, best_fixed])),
    }


def figure(example: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(example["outs"])
    fig, ax = plt.subplots(2, k + 2, figsize=(2.3 * (k + 2), 5.8))
    row = example["row"]
    ax[0, 0].imshow(example["degraded"])
    ax[0, 0].set_title(f"input\n{row['input']:.2f} dB", fontsize=8)
    for j, (o, p) in enumerate(zip(example["outs"], example["plans"], strict=True)):
        ax[0, j + 1].imshow(o)
        ax[0, j + 1].set_title(f"{p.replace(', ', chr(10))}\n{row['candidates'][j]:.2f} dB", fontsize=7)
        ax[1, j + 1].imshow(example["weights"][j], vmin=0, vmax=1, cmap="magma")
        ax[1, j + 1].set_title(f"weight (mean {example['weights'][j].mean():.2f})", fontsize=8)
    ax[0, k + 1].imshow(np.clip(example["fused"], 0, 1))
    ax[0, k + 1].set_title(f"fused\n{row['fused']:.2f} dB", fontsize=8)
    ax[1, k + 1].imshow(example["clean"])
    ax[1, k + 1].set_title("clean", fontsize=8)
    ax[1, 0].axis("off")
    for a in ax.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default="../shared/data/images/cbsd68")
    p.add_argument("--combos", nargs="+", default=["low_light,noise", "noise,jpeg"])
    p.add_argument("--held-out", action="store_true", help="instead of --images: the held-out train photos (every "
                   "12th of the train folders, restoreagent.splits; never trained on)")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--n", type=int, default=None, help="only the first N photos")
    p.add_argument("--weights", default=None, help="fusion weights (default: what run --fuse uses: the shipped "
                   "specialist of the plan's task set, else the general network)")
    p.add_argument("--no-mix", action="store_true", help="the network alone, without the task set's whole-photo mix head")
    p.add_argument("--json", help="write the per-photo rows and the summaries here")
    p.add_argument("--figure", help="a PNG per combination: candidates, weight maps, fused (name_COMBO.png)")
    p.add_argument("--example", type=int, default=0, help="which photo the figure shows")
    args = p.parse_args()
    if args.held_out:
        from restoreagent.splits import TRAIN_FOLDERS, VAL_EVERY, split_files

        files = split_files(list_images(list(TRAIN_FOLDERS)), VAL_EVERY)[1][: args.n]
    else:
        files = list_images(args.images)[: args.n]
    model = load_fusion(args.weights) if args.weights else None
    out = {}
    print("| degradations | K | input | plan alone | best fixed candidate | oracle best-of-K | whole-photo convex optimum | "
          "8 px block oracle | 8 px block convex optimum | fused | fused - oracle | fused - best fixed (mean) | fused > oracle |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for combo in args.combos:
        rows, plans, example = evaluate(files, combo, args.k, args.crop, model, args.example if args.figure else None,
                                        not args.no_mix)
        s = summarise(rows, plans)
        s["weights"] = args.weights or rows[0].get("weights")
        s["mix"] = rows[0].get("mix")
        out[combo] = {"summary": s, "rows": rows}
        print(f"| {combo.replace(',', ' + ')} | {s['k']} | {s['input']:.2f} | {s['plan']:.2f} | {s['best_fixed']:.2f} | "
              f"{s['oracle']:.2f} | {s['global_convex']:.2f} | {s['block_oracle']:.2f} | {s['block_convex']:.2f} | **{s['fused']:.2f}** | "
              f"{s['gain_vs_oracle']:+.2f} | {s['gain_vs_best_fixed']:+.2f} ({s['mean_gain_vs_best_fixed']:+.2f}) | "
              f"{s['beats_oracle']:.0%} |", flush=True)
        if args.figure and example:
            stem = args.figure.removesuffix(".png")
            figure(example, f"{stem}_{combo.replace(',', '+')}.png",
                   f"{combo.replace(',', ' + ')}: {example['row']['photo']} (cbsd68), K = {args.k}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
