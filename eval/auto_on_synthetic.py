"""One-shot `run --auto` (default quality checks) on synthetic photos from the train folders: PSNR.

    OMP_NUM_THREADS=1 nice python eval/auto_on_synthetic.py ../shared/data/images/{set14,urban100_crops,sun_hays80} \
        --n 16 --crop 256 --json OUT.json
    python eval/auto_on_synthetic.py --compare BEFORE.json AFTER.json

Checks that the quality rules (restoreagent/quality.py) keep synthetic performance: each photo
(the first ``n`` of the folders, evenly spaced, centre crop ``crop``) degraded by each chain of
:data:`CHAINS` (RestoreAgent's seven combinations, each degradation the rules touch alone, low light
with the generator's camera realism (sensor noise), faint noise, and the clean photo), restored by :func:`restoreagent.agent.restore_auto` as `run --auto`
does, and scored by PSNR and SSIM against the clean photo. Run it once per code version
(``PYTHONPATH``) and compare the two files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

CHAINS = [
    "noise, jpeg",
    "low_light, noise",
    "motion_blur, noise, jpeg",
    "rain, noise, jpeg",
    "haze, noise, jpeg",
    "haze, rain, noise, jpeg",
    "motion_blur, rain, noise, jpeg",
    "low_light",
    "low_light @camera",  # with the generator's camera realism: sensor noise that brightening reveals
    "haze",
    "noise",
    "noise:sigma=3",
    "",  # the clean photo
]


def psnr(clean, x) -> float:
    return min(40.0, float(peak_signal_noise_ratio(clean, np.clip(x, 0, 1), data_range=1.0))) if not np.array_equal(clean, x) else 40.0


def run(args):
    from restoreagent.agent import restore_auto
    from restoreagent.degradations import degrade
    from restoreagent.imageio import center_crop, list_images, load_image
    from restoreagent.planners import get_planner

    planner = get_planner("vlm")
    paths = [p for f in args.folders for p in list_images(f)]
    step = max(1, len(paths) // args.n)
    rows = []
    for i, path in enumerate(paths[::step][: args.n]):
        clean = center_crop(load_image(path), args.crop)
        for chain in CHAINS:
            text, camera = chain.split(" @")[0], 1.0 if chain.endswith("@camera") else 0.0
            x = degrade(clean, chain=text, seed=i, camera=camera)[0] if chain else clean
            t0 = time.perf_counter()
            y, report = restore_auto(x, planner=planner)
            rows.append({
                "photo": path.name, "chain": chain or "clean", "seconds": round(time.perf_counter() - t0, 3),
                "kept": [f"{s['task']}:{s['tool']}" for s in report["steps"] if s["kept"]],
                "psnr_in": round(psnr(clean, x), 3), "psnr_out": round(psnr(clean, y), 3),
                "ssim_out": round(float(structural_similarity(clean, y, channel_axis=2, data_range=1.0)), 4),
            })
            print(json.dumps(rows[-1]), flush=True)
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)


def compare(before_path, after_path):
    before, after = json.load(open(before_path)), json.load(open(after_path))
    key = {(r["photo"], r["chain"]): r for r in before}
    print("| chain | n | PSNR in | PSNR out before | PSNR out after | SSIM before | SSIM after | plans changed | PSNR down > 0.5 dB | up > 0.5 dB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    chains = list(dict.fromkeys(r["chain"] for r in after))
    for chain in [*chains, "all"]:
        rs = [r for r in after if chain in ("all", r["chain"])]
        bs = [key[(r["photo"], r["chain"])] for r in rs]
        d = [a["psnr_out"] - b["psnr_out"] for a, b in zip(rs, bs)]
        print(f"| {chain} | {len(rs)} | {statistics.mean(r['psnr_in'] for r in rs):.2f} | {statistics.mean(b['psnr_out'] for b in bs):.2f} "
              f"| {statistics.mean(r['psnr_out'] for r in rs):.2f} | {statistics.mean(b['ssim_out'] for b in bs):.4f} "
              f"| {statistics.mean(r['ssim_out'] for r in rs):.4f} | {sum(a['kept'] != b['kept'] for a, b in zip(rs, bs))} "
              f"| {sum(x < -0.5 for x in d)} | {sum(x > 0.5 for x in d)} |")
    for a in after:
        b = key[(a["photo"], a["chain"])]
        if a["kept"] != b["kept"]:
            print(f"  {a['photo']} [{a['chain']}]: {', '.join(b['kept']) or 'nothing'} ({b['psnr_out']:.2f} dB) -> "
                  f"{', '.join(a['kept']) or 'nothing'} ({a['psnr_out']:.2f} dB)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="*")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--json")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args(argv)
    if args.compare:
        compare(*args.compare)
    else:
        run(args)


if __name__ == "__main__":
    main()
