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

PHOTOS = ("../shared/data/images/real_dev/lime_lowlight/7.png", "../shared/data/images/real_dev/lime_lowlight/6.png")


CELL = 220  # px: the height of every picture in the figure


def _at_height(image: np.ndarray, height: int) -> np.ndarray:
    im = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    return np.asarray(im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS))


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
        rows.append([_at_height(c, CELL) for c in row])
    # every cell at one height; rows of narrower photos padded white on the right, none cut
    width = max(sum(c.shape[1] for c in r) for r in rows)
    grid = np.concatenate([np.pad(np.concatenate(r, axis=1), ((0, 0), (0, width - sum(c.shape[1] for c in r)), (0, 0)),
                                  constant_values=255) for r in rows], axis=0)
    Image.fromarray(grid).save(args.out)
    print(f"wrote {args.out} (columns: photo, default planner, verify)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
