"""`restoreagent run --auto` on real degraded photos: no-reference scores before and after, and a sheet.

    OMP_NUM_THREADS=1 nice python eval/auto_on_real_photos.py \
        ../shared/data/images/real_dev/rni15_noise ../shared/data/images/real_dev/lime_lowlight \
        --out docs/img/real_photos_auto.png
    (add --quality-check none for the plans as the planner gives them, --stepwise for `run --auto --stepwise`)

Each photo goes through :func:`restoreagent.agent.restore_auto` exactly as `restoreagent run PHOTO
--auto` does (``--stepwise`` for `run --auto --stepwise`), on the full photo. The no-reference
measures of :mod:`restoreagent.quality` (noise, exposure, PIQE) are taken before and after; a
measure that gets worse by more than its quality-check margin (noise 1 grey level, exposure 0.01,
PIQE 10) marks the photo as made worse on it. Writes the contact sheet (input | output, with the
plan and the scores), ``OUT.json`` (every number) and ``OUT.md`` (the table for the docs).
Per-photo results are kept in ``--cache`` so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from PIL import Image, ImageDraw
from tqdm import tqdm

from restoreagent.agent import restore_auto
from restoreagent.imageio import list_images, load_image, to_uint8
from restoreagent.planners import get_planner
from restoreagent.quality import DEFAULT_QUALITY_CHECK, QUALITY_CHECKS, exposure_error, noise_level, piqe

MEASURES = {"noise": noise_level, "exposure": exposure_error, "piqe": piqe}


def scores(image) -> dict:
    return {name: round(float(fn(image)), 3) for name, fn in MEASURES.items()}


def worse(before: dict, after: dict) -> list[str]:
    """The measures that got worse by more than their quality-check margin (all are lower-better)."""
    return [m for m in MEASURES if after[m] - before[m] > QUALITY_CHECKS[m].margin]


def cell(img, lines, side):
    pil = Image.fromarray(to_uint8(img))
    pil.thumbnail((side, side))
    canvas = Image.new("RGB", (side, side + 44), "white")
    canvas.paste(pil, ((side - pil.width) // 2, 44))
    d = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines[:3]):
        d.text((3, 2 + 13 * i), line[: side // 6], fill="black")
    return canvas


def code_version() -> str:
    """A short hash of what decides an output (the agent loop, the quality rules, the shipped planner
    and its scorer), so cached results of other code are not reused."""
    import hashlib

    import restoreagent

    root = Path(restoreagent.__file__).parent
    h = hashlib.sha256()
    for rel in ("agent.py", "quality.py", "executor.py", "assets/planner/restoreagent_planner.json", "assets/ranker/model.safetensors"):
        f = root / rel
        h.update(rel.encode() + (f.read_bytes() if f.exists() else b""))
    return h.hexdigest()[:10]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--stepwise", action="store_true", help="as `run --auto --stepwise` (default quality checks)")
    ap.add_argument("--quality-check", default=DEFAULT_QUALITY_CHECK,
                    help="as `run --auto --quality-check` ('none': the plan as the planner gave it, the behaviour before issue 13)")
    ap.add_argument("--limit", type=int, default=0, help="photos per folder (0: all)")
    ap.add_argument("--max-side", type=int, default=256, help="cell size of the sheet (restoration runs on the full photo)")
    ap.add_argument("--cache", default="runs/auto_on_real_photos", help="per-photo results (resume)")
    ap.add_argument("--out", required=True, help="the sheet (PNG); OUT.json and OUT.md beside it")
    args = ap.parse_args(argv)
    planner = get_planner("vlm")
    mode = ("stepwise" if args.stepwise else "one-shot") + f", checks {args.quality_check}"
    cache = Path(args.cache) / (mode.replace(", checks ", "__").replace(",", "+") + "__" + code_version())
    cache.mkdir(parents=True, exist_ok=True)
    photos = [p for f in args.folders for p in (list_images(f)[: args.limit] if args.limit else list_images(f))]
    rows, cells = [], []
    for path in tqdm(photos, desc=f"run --auto ({mode})", unit="photo"):
        image = load_image(path)
        done = cache / f"{path.parent.name}__{path.stem}.json"
        out_png = done.with_suffix(".png")
        if done.exists() and out_png.exists():
            row = json.loads(done.read_text())
            restored = load_image(out_png)
        else:
            t0 = time.perf_counter()
            restored, report = restore_auto(image, planner=planner, stepwise=args.stepwise, quality_check=args.quality_check)
            seconds = time.perf_counter() - t0
            kept = [f"{s['task']}:{s['tool']}" for s in report["steps"] if s.get("kept", True)]
            row = {
                "photo": f"{path.parent.name}/{path.name}",
                "size": list(image.shape[:2]),
                "answers": report["answers"],
                "kept_steps": kept,
                "rolled_back": [f"{s['task']}:{s['tool']}" for s in report["steps"] if not s.get("kept", True)],
                "seconds": round(seconds, 2),
                "before": scores(image),
                "after": scores(restored),
            }
            row["worse_on"] = worse(row["before"], row["after"])
            Image.fromarray(to_uint8(restored)).save(out_png)
            done.write_text(json.dumps(row, indent=1) + "\n")
        rows.append(row)
        b, a = row["before"], row["after"]
        plan = ", ".join(row["kept_steps"]) or "nothing"
        cells.append([
            cell(image, [row["photo"], f"noise {b['noise']:.1f} expo {b['exposure']:.2f} piqe {b['piqe']:.0f}"], args.max_side),
            cell(restored, [plan, f"noise {a['noise']:.1f} expo {a['exposure']:.2f} piqe {a['piqe']:.0f}",
                            ("WORSE: " + ", ".join(row["worse_on"])) if row["worse_on"] else ""], args.max_side),
        ])
    per_row = 4  # photos per sheet row: input, output pairs side by side
    h, w = cells[0][0].height, args.max_side
    nrows = -(-len(cells) // per_row)
    sheet = Image.new("RGB", (per_row * 2 * w, nrows * h), "white")
    for i, pair in enumerate(cells):
        for j, c in enumerate(pair):
            sheet.paste(c, (((i % per_row) * 2 + j) * w, (i // per_row) * h))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    out.with_suffix(".json").write_text(json.dumps({"mode": mode, "photos": rows}, indent=1) + "\n")
    md = markdown(rows, mode)
    out.with_suffix(".md").write_text(md)
    print(md)


def markdown(rows, mode) -> str:
    lines = [
        f"`run --auto` ({mode}) on {len(rows)} photos; no-reference scores before → after (lower is better);"
        " **bold**: worse by more than the check's margin.",
        "",
        "| photo | kept plan (rolled back) | noise | exposure | PIQE | s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, a = r["before"], r["after"]

        def fmt(m, digits, b=b, a=a, r=r):
            text = f"{b[m]:.{digits}f} → {a[m]:.{digits}f}"
            return f"**{text}**" if m in r["worse_on"] else text

        plan = ", ".join(r["kept_steps"]) or "nothing"
        if r["rolled_back"]:
            plan += f" ({', '.join(r['rolled_back'])})"
        lines.append(f"| {r['photo']} | {plan} | {fmt('noise', 1)} | {fmt('exposure', 3)} | {fmt('piqe', 1)} | {r['seconds']:.1f} |")
    lines.append("")
    for m in MEASURES:
        d = [r["after"][m] - r["before"][m] for r in rows]
        n_worse = sum(m in r["worse_on"] for r in rows)
        lines.append(f"- {m}: median change {statistics.median(d):+.3f}; worse by more than the margin on {n_worse} of {len(rows)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
