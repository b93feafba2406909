"""Plan time of the ``verify`` planner against the shipped default on two photos (a 256 px example
and a 700 px real photo), median of 3 plans each after a warm-up; every plan sees a slightly changed
photo, so the planner's memory of the last photo's answer is not what is timed.

    OMP_NUM_THREADS=2 python eval/verify_latency.py [--half]

``--half``: the learned tools in reduced precision (bfloat16 on a CPU with native bfloat16).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from restoreagent import Agent
from restoreagent.imageio import load_image

PHOTOS = ("examples/astronaut_noise_jpeg.png", "../shared/data/images/real_dev/rni15_noise/Boy.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--half", action="store_true", help="learned tools in bfloat16 where the CPU computes it natively")
    args = ap.parse_args()
    for planner in ("verify", "default"):
        agent = Agent(planner=planner, device="cpu", half=args.half)
        for path in PHOTOS:
            image = load_image(path)
            agent.plan(image)  # warm-up: loads the models and tools
            times = []
            for k in range(3):
                changed = image + np.float32(1e-4 * (k + 1))
                t0 = time.perf_counter()
                agent.plan(changed)
                times.append(time.perf_counter() - t0)
            print(f"{planner}: {path.rsplit('/', 1)[-1]} {image.shape[1]}x{image.shape[0]}: median plan {statistics.median(times):.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
