"""Link the train photos the plan scorer and the verifier hold out (1 in 10, by a hash of the photo's
name) into one folder, so that `restoreagent bench` can measure planners on them: the selection
bench, where a planner's settings are chosen without looking at the dev split.

    python eval/val_photos.py --out /tmp/valphotos
"""

from __future__ import annotations

import argparse
from pathlib import Path

from restoreagent.imageio import list_images
from restoreagent.planners.ranker.train import is_validation_photo
from restoreagent.splits import TRAIN_FOLDERS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder to create (links to the held-out photos)")
    ap.add_argument("--images", nargs="+", default=list(TRAIN_FOLDERS), help="the train photo folders")
    ap.add_argument("--every", type=int, default=10, help="1 in N photos held out (the scorer's val_every)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for folder in args.images:
        root = Path(folder)
        for f in list_images(root):
            if is_validation_photo(f"{root.name}/{f.relative_to(root).as_posix()}", args.every):
                link = out / f"{root.name}__{f.name}"
                if not link.exists():
                    link.symlink_to(f.resolve())
                n += 1
    print(f"{n} held-out photos linked in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
