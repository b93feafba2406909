"""Does test-time augmentation help the detector? Exact-set accuracy with the presence logits and
severities averaged over flipped / rotated copies of each tile (docs/perception.md, "Tried").

    python eval/detect_tta.py --samples 400

Samples: the benchmark's protocol (random 1-4 core degradations, 128 px centre crops, seed 5) on
the detector's own held-out calibration photos (listed in its detector.json, found in the train
folders), never the dev split. The calibration (fitted on plain logits) is kept for every view set.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from restoreagent.degradations import degrade
from restoreagent.imageio import center_crop, list_images, load_image
from restoreagent.jobs.bench import BenchConfig
from restoreagent.perception import Detector
from restoreagent.sampling import sample_plan
from restoreagent.splits import TRAIN_FOLDERS

VIEWS = {  # name -> the transforms of a (N, 3, T, T) tile batch whose outputs are averaged
    "none": [lambda x: x],
    "flip left-right": [lambda x: x, lambda x: x.flip(-1)],
    "flips (4)": [lambda x: x, lambda x: x.flip(-1), lambda x: x.flip(-2), lambda x: x.flip(-1).flip(-2)],
    "transpose": [lambda x: x, lambda x: x.transpose(-1, -2)],
    "dihedral (8)": [lambda x, k=k, f=f: torch.rot90(x.flip(-1) if f else x, k, (-2, -1)) for k in range(4) for f in (0, 1)],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--detector", default=None, help="detector folder (default: the shipped one)")
    args = p.parse_args()
    torch.set_num_threads(1)
    det = Detector(args.detector)
    names = set(det.meta["train"]["validation"]["photos"])
    held_out = [f for f in list_images(list(TRAIN_FOLDERS)) if f.name in names]
    with tempfile.TemporaryDirectory() as tmp:  # the sampler takes a folder: link the held-out photos into one
        for f in held_out:
            (Path(tmp) / f.name).symlink_to(f.resolve())
        files = list_images(tmp)
        cfg = BenchConfig(images=tmp, out="", samples=args.samples, seed=args.seed, crop=128)
        hits = {k: [] for k in VIEWS}
        for s in tqdm(sample_plan(cfg, files, None), desc="samples"):
            deg, rec = degrade(center_crop(load_image(s["image"]), 128), chain=", ".join(s["combo"]), seed=s["seed"])
            x = torch.from_numpy(det.tiles(deg))
            truth = sorted(rec["degradations"])
            with torch.inference_mode():
                for name, views in VIEWS.items():
                    feats = [det.model.features(v(x)) for v in views]
                    logits = torch.stack([det.model.presence(f).mean(0) for f in feats]).mean(0)
                    sev = torch.stack([torch.sigmoid(det.model.severity(f)).mean(0) for f in feats]).mean(0)
                    hits[name].append(sorted(det.decide(logits.numpy().astype(np.float64), sev.numpy()).degradations) == truth)
    print(f"{len(held_out)} held-out photos, {args.samples} samples")
    print("| views averaged | exact set |\n|---|---|")
    for name, h in hits.items():
        print(f"| {name} | {np.mean(h):.1%} |")


if __name__ == "__main__":
    main()
