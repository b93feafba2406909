"""Timings behind docs/api.md: Agent.restore per photo, a folder run, and --alternatives.

    python eval/api_timing.py --images ../shared/data/images/urban100_crops ../shared/data/images/sun_hays80 \
        --n 100 --work /tmp/api_timing --out docs/api_timing.json

1. Makes ``n`` 512x512 test photos (centre crops of the given folders' photos, each with 1-2 random
   degradations of the generator, seeded), once, in WORK/photos (resumable: existing files are kept).
2. ``single``: one Agent (the shipped planner) restores each photo with ``restore(path)`` after
   loading; the per-photo times (file decode included) and their sum.
3. ``folder``: the command ``restoreagent run WORK/photos -o WORK/out --auto`` end to end (wall clock,
   a fresh process: imports and model loading included), compared with that sum.
4. ``alternatives``: on the first ``--alt-photos`` photos, the commands ``run PHOTO --auto`` and
   ``run PHOTO --auto --alternatives 4`` (wall clock, median of ``--repeats``), and whether the 4
   plans are distinct.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def make_photos(folders, n: int, work: Path, size: int = 512) -> list[Path]:
    from restoreagent.degradations import degrade
    from restoreagent.imageio import center_crop, list_images, load_image, save_image

    out_dir = work / "photos"
    files = [f for f in list_images(folders) if min(load_image(f).shape[:2]) >= size][:n]
    paths = []
    for i, f in enumerate(files):
        target = out_dir / f"{i:03d}_{f.stem}.png"
        if not target.exists():
            image, _ = degrade(center_crop(load_image(f), size), k=1 + i % 2, seed=i)
            save_image(image, target)
        paths.append(target)
    return paths


def command(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``restoreagent`` command in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "restoreagent.cli", *args], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", nargs="+", required=True, help="folders of photos at least 512 px on each side")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--work", required=True, help="scratch folder (test photos, outputs)")
    ap.add_argument("--out", required=True, help="the JSON results")
    ap.add_argument("--alt-photos", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=[], choices=["single", "folder", "alternatives"])
    args = ap.parse_args()
    work = Path(args.work)
    photos = make_photos(args.images, args.n, work)
    res = {"photos": len(photos), "size": 512, "threads": os.environ.get("OMP_NUM_THREADS", "all"), "cpus": os.cpu_count()}
    if "single" not in args.skip:
        from restoreagent import Agent

        agent = Agent(device="cpu")
        agent.restore(photos[0])  # loads the planner, detector and the tools it uses
        times, cpu, plans, tools, steps = [], [], [], [], []
        for p in photos:
            t0, c0 = time.perf_counter(), time.process_time()
            r = agent.restore(p)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            plans.append(r.plan.text())
            tools.append(sum(s["seconds"] for s in r.steps))
            steps.append(len(r.steps))
        # where the time goes: the tools' share; the rest is decoding the file and planning
        # CPU seconds too: on a machine shared with other work, wall clock depends on the neighbours
        res["single"] = {"sum_s": round(sum(times), 2), "median_s": round(statistics.median(times), 3),
                         "cpu_sum_s": round(sum(cpu), 2), "cpu_median_s": round(statistics.median(cpu), 3),
                         "max_s": round(max(times), 3), "plans": len(set(plans)),
                         "median_tools_s": round(statistics.median(tools), 3),
                         "median_rest_s": round(statistics.median(t - u for t, u in zip(times, tools)), 3),
                         "median_steps": statistics.median(steps)}
        print(res["single"], flush=True)
    if "folder" not in args.skip:
        shutil.rmtree(work / "out", ignore_errors=True)
        wall, cpu_s = command(["run", str(work / "photos"), "-o", str(work / "out"), "--auto"])
        res["folder"] = {"wall_s": round(wall, 2), "cpu_s": round(cpu_s, 2)}
        if "single" in res:
            res["folder"]["ratio_to_single_sum"] = round(wall / res["single"]["sum_s"], 3)
            res["folder"]["cpu_ratio_to_single_sum"] = round(cpu_s / res["single"]["cpu_sum_s"], 3)
        print(res["folder"], flush=True)
    if "alternatives" not in args.skip:
        rows = []
        for p in photos[: args.alt_photos]:
            auto, alts = [], []
            for _ in range(args.repeats):  # interleaved, so both see the same neighbours
                auto.append(command(["run", str(p), "-o", str(work / "auto.png"), "--auto"]))
                alts.append(command(["run", str(p), "-o", str(work / "alt.png"), "--auto", "--alternatives", "4"]))
            out = subprocess.run([sys.executable, "-m", "restoreagent.cli", "run", str(p), "-o", str(work / "alt.png"),
                                  "--auto", "--alternatives", "4", "--json"], check=True, capture_output=True, text=True).stdout
            plans = [a["plan"]["text"] for a in json.loads(out)["alternatives"]]
            med = {name: [round(statistics.median(x[i] for x in runs), 2) for i in (0, 1)]
                   for name, runs in (("auto", auto), ("alternatives4", alts))}
            rows.append({"photo": p.name, "auto_s": med["auto"][0], "alternatives4_s": med["alternatives4"][0],
                         "ratio": round(med["alternatives4"][0] / med["auto"][0], 2),
                         "auto_cpu_s": med["auto"][1], "alternatives4_cpu_s": med["alternatives4"][1],
                         "cpu_ratio": round(med["alternatives4"][1] / med["auto"][1], 2),
                         "distinct_plans": len(set(plans)), "plans": plans})
            print(rows[-1], flush=True)
        res["alternatives"] = rows
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
