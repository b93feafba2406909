"""The brightening curve as a prior: which gamma curve is best in the committed labels' low-light
samples and in a benchmark's cached searches, and how bright the photo folders are.

    python eval/exposure_prior.py --labels labels/restoreagent-labels-v1 \\
        --bench bench_out/combos_v5 bench_out/random_v5 \\
        --photos ../shared/data/images/urban100_crops ../shared/data/images/sun_hays80 \\
                 ../shared/data/images/set14 ../shared/data/images/cbsd68
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _curve(steps) -> str:
    tools = [s.split(":")[1] for s in steps if s.startswith("brighten:")]
    return tools[0] if tools else "none"


def labels_counts(folder) -> Counter:
    """Best pipeline's curve on the labeled low-light samples (balanced PSNR + SSIM z-score, as the labeler)."""
    from restoreagent.labeling.compact import decode_scores, read_compact_table

    counts: Counter = Counter()
    for row in read_compact_table(folder).to_pylist():
        if "low_light" not in json.loads(row["degradation_record"])["degradations"]:
            continue
        cands, _ = decode_scores(row)
        psnr = np.array([m["psnr"] for _, m in cands])
        ssim = np.array([m["ssim"] for _, m in cands])
        balanced = (psnr - psnr.mean()) / (psnr.std() + 1e-9) + (ssim - ssim.mean()) / (ssim.std() + 1e-9)
        counts[_curve([s.text() for s in cands[int(np.argmax(balanced))][0]])] += 1
    return counts


def bench_counts(folder) -> Counter:
    """Best candidate's curve in a benchmark's cached exhaustive searches with brightening."""
    counts: Counter = Counter()
    for f in sorted((Path(folder) / "samples").glob("*.json")):
        d = json.loads(f.read_text())
        if "tasks" in d and "brighten" in d["tasks"]:
            counts[_curve(max(d["candidates"], key=lambda c: c["balanced"])["plan"].split(", "))] += 1
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", nargs="*", default=[])
    ap.add_argument("--bench", nargs="*", default=[])
    ap.add_argument("--photos", nargs="*", default=[])
    args = ap.parse_args(argv)
    for folder in args.labels:
        print(f"{folder}: best curve on low-light samples {dict(labels_counts(folder))}")
    if args.bench:
        total: Counter = sum((bench_counts(f) for f in args.bench), Counter())
        print(f"{' + '.join(args.bench)}: best curve on low-light samples {dict(total)}")
    from restoreagent.imageio import list_images, load_image

    for folder in args.photos:
        stats = np.array([(float((y := load_image(p) @ LUMA).mean()), float(np.percentile(y, 95)))
                          for p in list_images(folder, recursive=False)])
        print(f"{folder}: {len(stats)} photos, mean luma {stats[:, 0].mean():.3f}, 95th percentile {stats[:, 1].mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
