"""Pick the fixed recipe's tool per task the way a careful expert would without looking at the image:
the tool with the best mean PSNR gain on its own degradation over the generator's whole severity range.

    .venv/bin/python eval/pick_fixed_tools.py [--samples 24]

Uses scikit-image's photos (not the benchmark's images), 128 px crops, random severities.
Prints a table and the YAML block for restoreagent/catalog/fixed_recipe.yaml.
"""

import argparse

import cv2
import numpy as np
from skimage import data

from restoreagent.degradations import degrade
from restoreagent.tasks import DEGRADATION_FOR_TASK, TASKS
from restoreagent.tools.registry import get_tool, tools_for_task


def psnr(a, b):
    return 10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=24)
    args = ap.parse_args()
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry(), data.cat()]
    crops = [cv2.resize(p, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32) / 255 for p in photos]
    picks = {}
    print("| task | tool | mean PSNR gain dB |\n|---|---|---|")
    for task in TASKS:
        gains = {t: [] for t in tools_for_task(task)}
        for i in range(args.samples):
            clean = crops[i % len(crops)]
            bad, _ = degrade(clean, chain=DEGRADATION_FOR_TASK[task], seed=1000 + i)
            base = psnr(bad, clean)
            for t in gains:
                gains[t].append(psnr(get_tool(t)(bad), clean) - base)
        for t, g in gains.items():
            print(f"| {task} | {t} | {np.mean(g):+.2f} |")
        picks[task] = max(gains, key=lambda t: np.mean(gains[t]))
    print("\ntools:")
    for task, tool in picks.items():
        print(f"  {task}: [{tool}]")


if __name__ == "__main__":
    main()
