"""Two real under-exposed LIME photos: the photo, `run --auto` with the shipped default planner,
and with `--planner verify` (docs/benchmarks.md, "The verifying planner").

    python eval/verify_figure.py --out docs/img/verify_real.png
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from restoreagent import Agent
from restoreagent.imageio import load_image

PHOTOS = ("../shared/data/images/real_dev/lime_lowlight/7.png", "../shared/data/images/real_dev/lime_lowlight/8.png")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--photos", nargs="+", default=list(PHOTOS))
    args = ap.parse_args(argv)
    agents = {p: Agent(planner=p, device="cpu") for p in ("default", "verify")}
    rows = []
    for path in args.photos:
        image = load_image(path)
        row = [image]
        for name, agent in agents.items():
            result = agent.restore(image)
            print(f"{path.rsplit('/', 1)[-1]}: {name}: {result.plan.text()}")
            row.append(np.clip(result.image, 0, 1))
        rows.append(np.concatenate(row, axis=1))
    w = min(r.shape[1] for r in rows)
    grid = np.concatenate([r[:, :w] for r in rows], axis=0)
    img = Image.fromarray((grid * 255).round().astype(np.uint8))
    img.resize((img.width // 2, img.height // 2), Image.LANCZOS).save(args.out)
    print(f"wrote {args.out} (columns: photo, default planner, verify)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
