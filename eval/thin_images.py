"""Per-pixel time of the learned tools on long thin images against a square one (issue 13, 10d).

    OMP_NUM_THREADS=1 python eval/thin_images.py [--runs 7] [--tools unet_denoise_mid,unet_sr_x2]

For each tool: the median time of ``runs`` calls on a 256x256 image and on 3x2048, 2048x3, 1x2048
and 8x2048 images (random content), divided by the pixel count, and the ratio of each to the square
image's. Prints a markdown table (docs/photo_files.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from restoreagent.tools.registry import get_tool

SHAPES = [(256, 256), (3, 2048), (2048, 3), (1, 2048), (8, 2048), (5, 1000)]


def per_pixel(tool, shape, runs) -> float:
    x = np.random.default_rng(0).random((*shape, 3)).astype(np.float32)
    tool(x)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        tool(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / (shape[0] * shape[1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--tools", default="unet_denoise_mid,unet_sr_x2")
    args = ap.parse_args(argv)
    print("| tool | " + " | ".join(f"{h}x{w}" for h, w in SHAPES) + " |")
    print("|---|" + "---|" * len(SHAPES))
    for name in args.tools.split(","):
        tool = get_tool(name)
        t = [per_pixel(tool, s, args.runs) for s in SHAPES]
        cells = [f"{t[0] * 1e6:.2f} µs/px"] + [f"{v * 1e6:.2f} µs/px ({v / t[0]:.1f}x)" for v in t[1:]]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
