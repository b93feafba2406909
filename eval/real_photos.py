"""Real degraded photos through the agent: what the detector finds, the plan, and before/after.

    python eval/real_photos.py ../shared/data/images/real_dev/rni15_noise ../shared/data/images/real_dev/lime_lowlight \
        --old-weights runs/tools/unet_denoise_low_gaussian.safetensors=unet_denoise_low ... --out docs/img/real_dev.png

One row per photo: the input, the restored photo with the shipped planner and toolbox, and, when
``--old-weights FILE=TOOL`` are given, the same plan with those tools' older weight files (e.g.
the denoisers trained on white Gaussian noise only). Captions carry the plan and the
no-reference noise and exposure measures (restoreagent.quality). ``--max-side`` shrinks large
photos for the sheet only (restoration runs on the full photo).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from restoreagent.imageio import list_images, load_image, to_uint8
from restoreagent.planners import PlanRequest, get_planner
from restoreagent.quality import noise_level
from restoreagent.tools.learned import build_learned_tool
from restoreagent.tools.registry import get_tool


def run_plan(image, plan, override):
    out = image
    for step in plan:
        tool = override.get(step.tool) or get_tool(step.tool)
        out = np.clip(np.asarray(tool(out), np.float32), 0, 1)
    return out


def caption(img, text, width):
    canvas = Image.new("RGB", (width, img.height + 30), "white")
    canvas.paste(img, (0, 30))
    d = ImageDraw.Draw(canvas)
    for i, line in enumerate(text.split("\n")[:2]):
        d.text((3, 2 + 13 * i), line[:90], fill="black")
    return canvas


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--planner", default="vlm")
    ap.add_argument("--old-weights", nargs="*", default=[], metavar="FILE=TOOL")
    ap.add_argument("--max-side", type=int, default=300)
    ap.add_argument("--limit", type=int, default=4, help="photos per folder")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    planner = get_planner(args.planner)
    override = {}
    for item in args.old_weights:
        f, _, name = item.partition("=")
        override[name] = build_learned_tool(f)
    rows, report = [], []
    for folder in args.folders:
        for path in list_images(folder)[: args.limit]:
            image = load_image(path)
            answer = planner.plan(PlanRequest(image=image))
            outs = [("input", image), ("restored", run_plan(image, answer.plan, {}))]
            if override and any(s.tool in override for s in answer.plan):
                outs.append(("same plan, old weights", run_plan(image, answer.plan, override)))
            cells = []
            for label, img in outs:
                pil = Image.fromarray(to_uint8(img))
                pil.thumbnail((args.max_side, args.max_side))
                text = f"{path.name}: {label}" + (f" ({answer.text()})" if label == "restored" else "")
                cells.append(caption(pil, f"{text}\nnoise {noise_level(img):.1f} | mean {img.mean():.2f}", args.max_side))
            rows.append(cells)
            report.append({"image": str(path), "answer": answer.text(),
                           "noise": [round(float(noise_level(img)), 2) for _, img in outs]})
    ncol = max(len(r) for r in rows)
    h = max(c.height for r in rows for c in r)
    sheet = Image.new("RGB", (ncol * args.max_side, h * len(rows)), "white")
    for i, r in enumerate(rows):
        for j, c in enumerate(r):
            sheet.paste(c, (j * args.max_side, i * h))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
