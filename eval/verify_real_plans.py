"""The plans of the ``ranker`` and ``verify`` planners on the real degraded photos (no reference:
read the plans).

    python eval/verify_real_plans.py [--verifier FILE] [--real ../shared/data/images/real_dev]
"""

from __future__ import annotations

import argparse

from restoreagent.imageio import list_images, load_image
from restoreagent.planners import PlanRequest, get_planner
from restoreagent.planners.verify import VerifyPlanner


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--verifier", help="verifier file (default: the shipped one)")
    ap.add_argument("--real", default="../shared/data/images/real_dev", help="folder of folders of real photos")
    args = ap.parse_args(argv)
    verify, ranker = VerifyPlanner(model=args.verifier), get_planner("ranker")
    for folder in ("rni15_noise", "lime_lowlight"):
        for f in list_images(f"{args.real}/{folder}", recursive=False):
            image = load_image(f)
            a, b = verify.plan(PlanRequest(image=image)), ranker.plan(PlanRequest(image=image))
            print(f"{folder} {f.name} {image.shape[1]}x{image.shape[0]} | ranker: {b.plan.text()} | verify: {a.plan.text()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
