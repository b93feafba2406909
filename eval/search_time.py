"""Wall time of one exhaustive search (with its internal nodes, as the labeler runs it), and where it goes.

    .venv/bin/python eval/search_time.py [--chain noise,jpeg,low_light,low_resolution] [--pyiqa] [--profile] [--per-tool]

One 128x128 crop of set14's third photo, degraded by ``--chain`` (seed 3), searched over every
candidate tool on 1 CPU thread. ``--pyiqa`` scores with pyiqa's own PSNR/SSIM instead of the
search's implementation of them (restoreagent.scoring), to measure what that saves. ``--per-tool``
times every tool call and the scoring (calls, seconds, ms per call per tool).
"""

import argparse
import collections
import cProfile
import os
import pstats
import time

import torch

from restoreagent import search as search_module
from restoreagent.degradations import degrade
from restoreagent.imageio import load_image, quantize
from restoreagent.scoring import Scorer
from restoreagent.search import exhaustive_search
from restoreagent.tools import registry


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chain", default="noise,jpeg,low_light,low_resolution")
    ap.add_argument("--images", default="../shared/data/images/set14")
    ap.add_argument("--pyiqa", action="store_true", help="score with pyiqa's metrics")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--per-tool", action="store_true", help="time each tool and the scoring")
    args = ap.parse_args()
    torch.set_num_threads(1)
    name = sorted(os.listdir(args.images))[2]
    clean = load_image(os.path.join(args.images, name))[:128, :128].copy()
    degraded, rec = degrade(clean, chain=args.chain, seed=3)
    degraded = quantize(degraded)
    scorer = Scorer(("psnr", "ssim"), fast=not args.pyiqa)
    exhaustive_search(degraded, clean, degradations=rec["degradations"][:1], scorer=scorer)  # warm-up: load tools
    spent, calls = collections.defaultdict(float), collections.Counter()
    if args.per_tool:
        scorer = _timed_scorer(scorer, spent, calls)
        _time_tools(spent, calls)
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
    if args.per_tool:
        print("| tool | calls | seconds | ms per call |\n|---|---|---|---|")
        for k in sorted(spent, key=lambda k: -spent[k]):
            print(f"| {k} | {calls[k]} | {spent[k]:.2f} | {1000 * spent[k] / calls[k]:.1f} |")


class _timed_scorer:
    def __init__(self, scorer, spent, calls):
        self.scorer, self.metrics, self.spent, self.calls = scorer, scorer.metrics, spent, calls

    def __call__(self, image, reference):
        t0 = time.perf_counter()
        out = self.scorer(image, reference)
        self.spent["(scoring)"] += time.perf_counter() - t0
        self.calls["(scoring)"] += 1
        return out


def _time_tools(spent, calls) -> None:
    """Wrap every tool the search builds so that its calls are timed."""
    build = registry.get_tool

    class Timed:
        def __init__(self, tool):
            self.tool, self.name, self.max_batch = tool, tool.name, tool.max_batch

        def __call__(self, image):
            t0 = time.perf_counter()
            out = self.tool(image)
            spent[self.name] += time.perf_counter() - t0
            calls[self.name] += 1
            return out

        def batch(self, images):
            return [self(im) for im in images]

    search_module.get_tool = lambda name: Timed(build(name))


if __name__ == "__main__":
    main()
