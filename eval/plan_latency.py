"""Latency of the shipped planner (`restoreagent plan`'s work, model already loaded) and of a full
`run --auto` on a 512x512 image.

    .venv/bin/python eval/plan_latency.py --images ../shared/data/images/cbsd68 --n 40

Each image is degraded with a random 1-4 degradation chain (seeded), then planned once (timed).
"""

import argparse
import statistics
import time

import numpy as np
from skimage import data

from restoreagent.agent import restore_auto
from restoreagent.degradations import degrade
from restoreagent.imageio import list_images, load_image
from restoreagent.planners import PlanRequest, get_planner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()
    planner = get_planner("vlm")
    files = list_images(args.images, recursive=False)[: args.n]
    times = []
    for i, f in enumerate(files):
        img, _ = degrade(load_image(f), k=1 + i % 4, seed=i)
        if i == 0:
            planner.plan(PlanRequest(image=img))  # first call builds the decoding tables
        t0 = time.perf_counter()
        planner.plan(PlanRequest(image=img))
        times.append(time.perf_counter() - t0)
    print(
        f"plan latency over {len(times)} images: median {1000 * statistics.median(times):.1f} ms, "
        f"p90 {1000 * float(np.percentile(times, 90)):.1f} ms"
    )
    img512, _ = degrade(
        data.astronaut().astype(np.float32) / 255.0, chain="noise:sigma=25,jpeg:quality=20", seed=0
    )
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        _, report = restore_auto(img512, planner=planner)
        runs.append(time.perf_counter() - t0)
    print(
        f"run --auto on 512x512 (astronaut, noise+jpeg): median {statistics.median(runs):.2f} s over 3 runs; plan: {report['plan']['text']}"
    )


if __name__ == "__main__":
    main()
