"""Calibrating the one-shot quality rules of restoreagent/quality.py on synthetic photos (train folders).

    OMP_NUM_THREADS=1 nice python eval/quality_rules.py ../shared/data/images/{set14,urban100_crops,sun_hays80} \
        --n 24 --crop 256 [--json OUT.json]

Two measurements, each on the first ``n`` photos (centre crop ``crop``) of the train folders; no
real_dev photo is used:

1. **Faint noise: when does PIQE judge a denoising step?** Gaussian noise of sigma 0 (clean) to 20
   grey levels, then each learned denoiser. A step is *good* when it raises PSNR against the clean
   photo by 0.5 dB or more, *harmful* when it lowers it by 0.5 dB or more (PSNR capped at 40 dB, as
   in eval/quality_check.py: an untouched clean photo counts as 40). For every step: the noise the
   noisy photo measures (quality.noise_level) and PIQE before and after. With the matched denoiser
   (the one whose severity range holds sigma, as the planner is trained to choose), the rule's
   threshold is the largest measured noise below which PIQE (margin 10) rejects no good step.
2. **Haze: the dark-channel statistic of hazy and not hazy photos.** The statistic of the clean
   photo, of each degradation of the generator alone (haze at beta 0.6, the generator's lowest,
   and 1.2), and of RestoreAgent's combinations with haze. The pre-check's threshold must be
   below every hazy image's statistic.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from skimage.metrics import peak_signal_noise_ratio

from restoreagent.degradations import apply_degradation, degrade
from restoreagent.degradations.params import complete_params
from restoreagent.imageio import center_crop, list_images, load_image
from restoreagent.quality import haze_level, noise_level, piqe
from restoreagent.tools.registry import get_tool

SIGMAS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
DENOISERS = ("unet_denoise_low", "unet_denoise_mid", "unet_denoise_high")
GOOD = 0.5


CAP = 40.0


def psnr(clean, x) -> float:
    return min(CAP, float(peak_signal_noise_ratio(clean, np.clip(x, 0, 1), data_range=1.0))) if not np.array_equal(clean, x) else CAP


def matched(sigma) -> str:
    return "unet_denoise_low" if sigma < 15 else "unet_denoise_mid" if sigma < 30 else "unet_denoise_high"


def faint_noise(photos) -> list[dict]:
    rows = []
    for i, clean in enumerate(photos):
        for sigma in SIGMAS:
            x = np.clip(clean + np.random.default_rng(i).normal(0, sigma / 255.0, clean.shape), 0, 1).astype(np.float32)
            n_in, p_in, q_in = noise_level(x), piqe(x), psnr(clean, x)
            for tool in DENOISERS:
                y = get_tool(tool)(x)
                rows.append({"photo": i, "sigma": sigma, "tool": tool, "matched": tool == matched(sigma),
                             "noise_in": round(n_in, 3), "piqe_in": round(p_in, 2), "piqe_out": round(piqe(y), 2),
                             "psnr_in": round(q_in, 3), "psnr_gain": round(psnr(clean, y) - q_in, 3)})
    return rows


def haze(photos) -> list[dict]:
    rows = []
    for i, clean in enumerate(photos):
        rows.append({"photo": i, "kind": "clean", "hazy": False, "haze": round(haze_level(clean), 4)})
        for name in ("noise", "jpeg", "low_light", "motion_blur", "rain", "low_resolution", "defocus_blur"):
            x, _ = degrade(clean, chain=name, seed=i)
            rows.append({"photo": i, "kind": name, "hazy": False, "haze": round(haze_level(x), 4)})
        for beta in (0.6, 1.2):
            rng = np.random.default_rng(i)
            x = apply_degradation(clean, "haze", complete_params("haze", {"beta": beta}, rng), rng)
            rows.append({"photo": i, "kind": f"haze beta={beta}", "hazy": True, "haze": round(haze_level(x), 4)})
        for chain in ("haze, noise", "haze, noise, jpeg", "haze, rain, noise, jpeg"):
            x, _ = degrade(clean, chain=chain, seed=i)
            rows.append({"photo": i, "kind": chain, "hazy": True, "haze": round(haze_level(x), 4)})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--json")
    ap.add_argument("--haze-only", action="store_true", help="only the haze measurement")
    args = ap.parse_args(argv)
    paths = [p for f in args.folders for p in list_images(f)]
    step = max(1, len(paths) // args.n)
    photos = [center_crop(load_image(p), args.crop) for p in paths[::step][: args.n]]
    haze_rows = haze(photos)
    noise_rows = [] if args.haze_only else faint_noise(photos)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"faint_noise": noise_rows, "haze": haze_rows}, f, indent=1)

    print(f"{len(photos)} photos, crop {args.crop}")
    if noise_rows:
        rs = [r for r in noise_rows if r["matched"]]
        print(f"\n## Matched denoising steps ({len(rs)}) judged by PIQE (margin 10) when the photo measures under T\n")
        print("| T (grey levels) | steps under T | good | good rejected | harmful | harmful rejected | PSNR lost to good steps rejected |")
        print("|---|---|---|---|---|---|---|")
        for t in (1.0, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 5.0):
            sel = [r for r in rs if r["noise_in"] < t]
            rej = [r for r in sel if r["piqe_out"] - r["piqe_in"] > 10]
            good = [r for r in sel if r["psnr_gain"] >= GOOD]
            bad = [r for r in sel if r["psnr_gain"] <= -GOOD]
            lost = sum(r["psnr_gain"] for r in rej if r["psnr_gain"] >= GOOD)
            print(f"| {t} | {len(sel)} | {len(good)} | {sum(r in rej for r in good)} | {len(bad)} | {sum(r in rej for r in bad)} | {lost:.1f} dB |")
        good_rejected = sorted(r["noise_in"] for r in rs if r["psnr_gain"] >= GOOD and r["piqe_out"] - r["piqe_in"] > 10)
        print(f"\nsmallest measured noise of a good matched step PIQE rejects: {good_rejected[0] if good_rejected else None}")
    print("\n## Dark-channel haze statistic (quality.haze_level)\n")
    print("| image | min | median | max |\n|---|---|---|---|")
    for kind in dict.fromkeys(r["kind"] for r in haze_rows):
        v = [r["haze"] for r in haze_rows if r["kind"] == kind]
        print(f"| {kind} | {min(v):.3f} | {float(np.median(v)):.3f} | {max(v):.3f} |")
    hazy = [r["haze"] for r in haze_rows if r["hazy"]]
    print(f"\nlowest statistic of a hazy image: {min(hazy):.3f}")


if __name__ == "__main__":
    main()
