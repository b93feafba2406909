"""PSNR / SSIM of every available tool of every task at three severities (the table in docs/model_zoo.md).

    .venv/bin/python eval/tool_quality.py --images ../shared/data/images/cbsd68 --n 16 --crop 256 \
        [--tasks denoise,dejpeg] [--json OUT.json]
    .venv/bin/python eval/tool_quality.py --images skimage --crop 256    # scikit-image's photos

The second form decides which tools are search candidates (``candidate: false`` in the catalogue
for a tool beaten at every severity), so that choice is not made on the benchmark's photos.

For each task, its degradation is applied alone to ``n`` photos (centre crop ``crop``) at a low,
a medium and a high severity (the parameter below; the degradation's other parameters are drawn
with seed = photo index, so every tool sees the same inputs), and every available tool of the
task (classical, learned, hub) is scored against the clean photo. Prints a markdown table with
the input's score, each tool's, and the margin of the best learned tool over the best classical.
"""

import argparse
import json
import statistics

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tqdm import tqdm

from restoreagent.degradations import apply_degradation
from restoreagent.degradations.params import complete_params
from restoreagent.imageio import center_crop, list_images, load_image
from restoreagent.tasks import DEGRADATION_FOR_TASK, TASKS
from restoreagent.tools.registry import available_tools, get_tool

# task -> (parameter, low / medium / high value), inside the generator's sampling ranges
SEVERITIES = {
    "denoise": ("sigma", (10.0, 22.0, 40.0)),
    "motion_deblur": ("length", (8, 15, 22)),
    "defocus_deblur": ("radius", (1.5, 3.0, 4.5)),
    "dejpeg": ("quality", (12, 25, 40)),
    "dehaze": ("beta", (0.8, 1.2, 1.6)),
    "derain": ("intensity", (0.55, 0.7, 0.85)),
    "desnow": ("size", (1.2, 1.75, 2.3)),
    "brighten": ("gamma", (1.7, 2.0, 2.4)),
    "super_resolve": ("scale", (2, 3, 4)),
}


def score(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    out, ref = out.astype(np.float64), ref.astype(np.float64)
    return (
        float(peak_signal_noise_ratio(ref, out, data_range=1.0)),
        float(structural_similarity(ref, out, data_range=1.0, channel_axis=2)),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.images == "skimage":  # scikit-image's colour photos: not a training or benchmark image
        from restoreagent.planners.vlm.train_data import skimage_images

        photos = [center_crop(p, args.crop) for p in skimage_images()[: args.n]]
    else:
        files = list_images(args.images, recursive=False)[: args.n]
        photos = [center_crop(load_image(f), args.crop) for f in files]
    results = []
    for task in args.tasks.split(","):
        degradation = DEGRADATION_FOR_TASK[task]
        key, levels = SEVERITIES[task]
        specs = available_tools(task)
        for level in levels:
            inputs = [
                apply_degradation(
                    x,
                    degradation,
                    complete_params(degradation, {key: level}, np.random.default_rng(i)),
                    np.random.default_rng(i),
                )
                for i, x in enumerate(photos)
            ]
            row = {"task": task, "param": key, "value": level, "n": len(photos), "tools": {}}
            row["input"] = [statistics.mean(v) for v in zip(*(score(y, x) for x, y in zip(photos, inputs)))]
            for s in tqdm(specs, desc=f"{task} {key}={level}", leave=False):
                tool = get_tool(s.name)
                psnr, ssim = zip(*(score(tool(y), x) for x, y in zip(photos, inputs)))
                row["tools"][s.name] = {
                    "kind": s.kind,
                    "psnr": statistics.mean(psnr),
                    "ssim": statistics.mean(ssim),
                }
            results.append(row)
    print(f"PSNR / SSIM, mean over {len(photos)} photos of {args.images} (centre {args.crop} px)\n")
    print(
        "| task | severity | input | best classical | best learned | learned - classical (dB) | all tools |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:

        def best(kind, r=r):
            c = {n: v for n, v in r["tools"].items() if v["kind"] == kind}
            return max(c.items(), key=lambda kv: kv[1]["psnr"]) if c else None

        bc, bl = best("classical"), best("learned")
        fmt = lambda b: f"{b[0]} {b[1]['psnr']:.2f} / {b[1]['ssim']:.3f}" if b else "-"  # noqa: E731
        margin = f"{bl[1]['psnr'] - bc[1]['psnr']:+.2f}" if bc and bl else "-"
        every = ", ".join(
            f"{n} {v['psnr']:.2f}" for n, v in sorted(r["tools"].items(), key=lambda kv: -kv[1]["psnr"])
        )
        print(
            f"| {r['task']} | {r['param']}={r['value']} | {r['input'][0]:.2f} / {r['input'][1]:.3f} | {fmt(bc)} "
            f"| {fmt(bl)} | {margin} | {every} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
