"""Wall time of one exhaustive search (with its internal nodes, as the labeler runs it), and where it goes.

    .venv/bin/python eval/search_time.py [--chain noise,jpeg,low_light,low_resolution] [--pyiqa] [--profile]

One 128x128 crop of set14's third photo, degraded by ``--chain`` (seed 3), searched over every
candidate tool on 1 CPU thread. ``--pyiqa`` scores with pyiqa's own PSNR/SSIM instead of the
search's implementation of them (restoreagent.scoring), to measure what that saves.
"""

import argparse
import cProfile
import os
import pstats
import time

import torch

from restoreagent.degradations import degrade
from restoreagent.imageio import load_image, quantize
from restoreagent.scoring import Scorer
from restoreagent.search import exhaustive_search


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chain", default="noise,jpeg,low_light,low_resolution")
    ap.add_argument("--images", default="../shared/data/images/set14")
    ap.add_argument("--pyiqa", action="store_true", help="score with pyiqa's metrics")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    name = sorted(os.listdir(args.images))[2]
    clean = load_image(os.path.join(args.images, name))[:128, :128].copy()
    degraded, rec = degrade(clean, chain=args.chain, seed=3)
    degraded = quantize(degraded)
    scorer = Scorer(("psnr", "ssim"), fast=not args.pyiqa)
    exhaustive_search(degraded, clean, degradations=rec["degradations"][:1], scorer=scorer)  # warm-up: load tools
    prof = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    res = exhaustive_search(degraded, clean, degradations=rec["degradations"], scorer=scorer, record_nodes=True)
    if prof:
        prof.disable()
    print(
        f"{name} {args.chain}: {time.perf_counter() - t0:.1f} s, {res.tool_calls} tool calls, "
        f"{len(res.candidates)} pipelines, {len(res.nodes)} internal nodes scored ({'pyiqa' if args.pyiqa else 'own'} metrics)"
    )
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
