"""Detector accuracy on the dev photos (docs/benchmarks.md, "Perception").

    python eval/detect_accuracy.py --images ../shared/data/images/cbsd68 --samples 400 \
        --combos configs/bench/restoreagent_combos.txt \
        --real ../shared/data/images/real_dev/rni15_noise:noise ../shared/data/images/real_dev/lime_lowlight:low_light \
        --out bench_out/detect

Sets: random 1-4 core degradations and RestoreAgent's combinations, each at 128 px centre crops
and on whole photos, plus the clean photos (false positives) and real degraded photos.
"""

import argparse
import logging
import shlex
import sys
from pathlib import Path

from restoreagent.perception import Detector
from restoreagent.perception.evaluate import EvalSet, run_clean, run_real, run_set, summarise, write_report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True, help="clean dev photos (never train photos)")
    ap.add_argument("--samples", type=int, default=400, help="samples per synthetic set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--combos", help="RestoreAgent's combinations file (adds its sets)")
    ap.add_argument("--whole-samples", type=int, default=136, help="samples of the whole-photo sets (0: none)")
    ap.add_argument("--camera", type=float, default=0.0, help="camera-realism probability of the synthetic chains")
    ap.add_argument("--real", nargs="*", default=[], metavar="FOLDER:LABEL", help="real degraded photos and their label")
    ap.add_argument("--detector", help="detector folder (default: the shipped one)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    det = Detector(args.detector)
    sets = [EvalSet("random 1-4, 128 px", args.images, args.samples, args.seed, 128, None, args.camera)]
    if args.combos:
        sets.append(EvalSet("RestoreAgent combos, 128 px", args.images, args.samples, args.seed, 128, args.combos, args.camera))
    if args.whole_samples:
        sets.append(EvalSet("random 1-4, whole photo", args.images, args.whole_samples, args.seed, 0, None, args.camera))
        if args.combos:
            sets.append(EvalSet("RestoreAgent combos, whole photo", args.images, args.whole_samples, args.seed, 0, args.combos, args.camera))
    summaries = {s.name: summarise(run_set(det, s), det.labels) for s in sets}
    summaries["clean, 128 px"] = summarise(run_clean(det, args.images, 128), det.labels)
    summaries["clean, whole photo"] = summarise(run_clean(det, args.images, 0), det.labels)
    real = []
    for item in args.real:
        folder, _, label = item.rpartition(":")
        real.append(run_real(det, folder, label))
    command = "python eval/detect_accuracy.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    write_report(Path(args.out), summaries, real, det.labels, command)
    print((Path(args.out) / "results.md").read_text())


if __name__ == "__main__":
    main()
