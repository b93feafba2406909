"""What a blend of which noise + JPEG candidates could reach, on held-out train crops (docs/fusion.md,
"Candidates"): the best whole-photo convex blend of each candidate set, fitted to the clean crop.

    python eval/fusion_ceilings.py --n 30

Crops: 160 px random views of the train folders' held-out photos (every 12th, as the fusion job's
validation), degraded by noise + JPEG with seed 1000 + i, never the dev split. Candidates: the
fixed recipe's plan and its variants; sets: the K = 4 of ``run --fuse 4``, plus the reordering,
the two-step brackets (a stronger deJPEG with a stronger or weaker denoiser), the plan without one
of its steps, and all of them. Printed: mean PSNR and the median per-crop gain over the best fixed
plan (the one with the highest mean).
"""

import argparse

import numpy as np
from fusion import global_convex_optimum, psnr  # eval/fusion.py, beside this script
from tqdm import tqdm

from restoreagent.degradations import degrade
from restoreagent.fusion import run_plans
from restoreagent.fusion.candidates import _with
from restoreagent.fusion.train import recipe_plan
from restoreagent.imageio import list_images, load_image
from restoreagent.plan import Plan
from restoreagent.splits import TRAIN_FOLDERS, split_files
from restoreagent.tools.learned.training import random_view


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=30, help="crops")
    p.add_argument("--crop", type=int, default=160)
    args = p.parse_args()
    _, held_out = split_files(list_images(list(TRAIN_FOLDERS)))
    rng = np.random.default_rng(7)
    sets = {"run --fuse 4": ["plan", "denoise high", "denoise low", "deJPEG severe"]}
    sets["+ reordered"] = sets["run --fuse 4"] + ["reordered"]
    sets["+ two-step brackets"] = sets["run --fuse 4"] + ["deJPEG severe + denoise high", "deJPEG severe + denoise low"]
    sets["+ one step dropped"] = sets["run --fuse 4"] + ["denoise only", "deJPEG only"]
    rows = []
    for i in tqdm(range(args.n), desc="crops"):
        clean = random_view(load_image(held_out[i % len(held_out)]), args.crop, rng)
        degraded, record = degrade(clean, chain="noise,jpeg", seed=1000 + i)
        plan = recipe_plan(record["degradations"])
        dn = next(j for j, s in enumerate(plan) if s.task == "denoise")
        dj = next(j for j, s in enumerate(plan) if s.task == "dejpeg")
        severe = _with(plan, dj, "unet_dejpeg_severe")
        plans = {"plan": plan, "denoise high": _with(plan, dn, "unet_denoise_high"),
                 "denoise low": _with(plan, dn, "unet_denoise_low"), "deJPEG severe": severe,
                 "reordered": Plan(tuple(reversed(plan.steps))),
                 "deJPEG severe + denoise high": _with(severe, dn, "unet_denoise_high"),
                 "deJPEG severe + denoise low": _with(severe, dn, "unet_denoise_low"),
                 "denoise only": Plan((plan.steps[dn],)), "deJPEG only": Plan((plan.steps[dj],))}
        outs = dict(zip(plans, run_plans(degraded, list(plans.values())), strict=True))
        row = {name: psnr(o, clean) for name, o in outs.items()}
        for name, members in {**sets, "all nine": list(plans)}.items():
            row[f"convex: {name}"] = global_convex_optimum([outs[m] for m in members], clean)
        rows.append(row)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    best = max((k for k in rows[0] if not k.startswith("convex")), key=mean.get)
    print(f"{args.n} crops; best fixed plan: {best}")
    print("| | mean PSNR | median gain over the best fixed plan |\n|---|---|---|")
    for k in rows[0]:
        print(f"| {k} | {mean[k]:.2f} | {np.median([r[k] - r[best] for r in rows]):+.2f} |")


if __name__ == "__main__":
    main()
