"""Detector latency on a large photo: python eval/detect_latency.py [--megapixels 12] [--repeats 5]

Times, in one process with the detector loaded once, decoding a JPEG of the given size and
detecting on it (the work `restoreagent detect PHOTO` does per file), on this machine's CPU
threads (torch's default). Prints the median of the repeats.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from restoreagent.imageio import load_image
from restoreagent.perception import Detector


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    w = int(round((args.megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    photo = Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BICUBIC)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jpg"
        photo.save(path, quality=92)
        det = Detector()
        det.detect(np.zeros((256, 256, 3), np.float32))  # warm-up
        times, detect_only = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            img = load_image(path)
            t1 = time.perf_counter()
            det.detect(img)
            t2 = time.perf_counter()
            times.append(t2 - t0)
            detect_only.append(t2 - t1)
    print(f"{w}x{h} ({w * h / 1e6:.1f} MP): decode + detect median {statistics.median(times):.3f} s, "
          f"detect alone {statistics.median(detect_only):.3f} s (median of {args.repeats})")


if __name__ == "__main__":
    main()
