"""The learned tools in float32 and in reduced precision (``--half``) on this CPU: speed and outputs.

    OMP_NUM_THREADS=1 .venv/bin/python eval/half_precision.py --images ../shared/data/images/cbsd68 \\
        [--n 4] [--sizes 128,512] [--tools unet_denoise_mid,...]

``half`` means bfloat16 on a CPU with native bfloat16 (AMX or AVX-512 BF16; float16 on CUDA), and
nothing on other CPUs (``restoreagent.tools.learned.runner.half_dtype``). For every shipped learned
tool: ``n`` photos of the folder, each degraded by the tool's own degradation (its training
ranges, a fixed seed) and cut to each size; both precisions run on the same inputs, alternately,
after a warm-up, so both see the same load. Prints ms per call (median), the speed-up, PSNR
against the clean photo in each precision, and the PSNR of the reduced-precision output against
the float32 one (how close they are).
"""

import argparse
import os
import statistics
import time

import numpy as np
import torch

from restoreagent.catalog.learned import learned_tools
from restoreagent.catalog.spec import weights_path
from restoreagent.imageio import list_images
from restoreagent.tools.learned import build_learned_tool
from restoreagent.tools.learned.runner import half_dtype
from restoreagent.tools.learned.training import make_pairs


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1 / mse) if mse > 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True, help="a folder of clean photos (e.g. cbsd68)")
    ap.add_argument("--n", type=int, default=4, help="photos per tool")
    ap.add_argument("--sizes", default="128,512", help="square input sizes in pixels")
    ap.add_argument("--reps", type=int, default=3, help="timed calls per input and precision")
    ap.add_argument("--tools", default="", help="comma-separated learned tools (default: all shipped)")
    args = ap.parse_args()
    os.environ.pop("RESTOREAGENT_HALF", None)  # it would lower the float32 side too

    dtype = half_dtype(torch.device("cpu"))
    print(f"reduced precision on this CPU: {dtype}; threads: {torch.get_num_threads()}")
    if dtype == torch.float32:
        print("this CPU has no native bfloat16: --half changes nothing here")
        return
    files = list_images([args.images])
    decls = learned_tools()
    names = [t for t in args.tools.split(",") if t] or list(decls)
    sizes = [int(s) for s in args.sizes.split(",")]
    print("\n| tool | px | float32 ms | half ms | speed-up | PSNR float32 / half (dB) | half vs float32 (dB) |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        d = decls[name]
        tools = {h: build_learned_tool(str(weights_path(d.weights)), device="cpu", half=h) for h in (False, True)}
        for size in sizes:
            deg, clean = make_pairs(files, d.degradation, dict(d.ranges), args.n, size, seed=0, desc=name)
            xs = [a.astype(np.float32) / 255 for a in deg]
            refs = [c.astype(np.float32) / 255 for c in clean]
            for h in (False, True):
                tools[h](xs[0])  # warm-up (oneDNN builds its kernels on the first call of a shape)
            times: dict[bool, list[float]] = {False: [], True: []}
            outs: dict[bool, list[np.ndarray]] = {False: [], True: []}
            for x in xs:
                last = {}
                for _ in range(args.reps):
                    for h in (False, True):
                        t0 = time.perf_counter()
                        last[h] = tools[h](x)
                        times[h].append(time.perf_counter() - t0)
                for h in (False, True):
                    outs[h].append(np.clip(last[h], 0, 1))
            f32, hf = 1000 * statistics.median(times[False]), 1000 * statistics.median(times[True])
            q32 = statistics.mean(psnr(o, r) for o, r in zip(outs[False], refs))
            qh = statistics.mean(psnr(o, r) for o, r in zip(outs[True], refs))
            agree = min(psnr(a, b) for a, b in zip(outs[False], outs[True]))
            print(f"| {name} | {size} | {f32:.1f} | {hf:.1f} | {f32 / hf:.2f}x | {q32:.2f} / {qh:.2f} | {agree:.1f} |", flush=True)


if __name__ == "__main__":
    main()
