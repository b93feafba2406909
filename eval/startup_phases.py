"""Where the time of ``restoreagent run PHOTO --auto`` goes, phase by phase (docs/performance.md).

    python eval/startup_phases.py PHOTO [--runs 3]

Each run is a fresh interpreter (the phases include the imports); per phase the median wall and CPU
time over the runs are printed, in milliseconds. The phases follow the command's own order: import
the CLI, read the photo, import torch, load the planner, plan, load the plan's tools, run them,
write the result (to a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, tempfile, time
marks = []
t, c = time.perf_counter(), time.process_time()
def mark(name):
    global t, c
    t2, c2 = time.perf_counter(), time.process_time()
    marks.append((name, 1000 * (t2 - t), 1000 * (c2 - c)))
    t, c = t2, c2
import restoreagent.cli  # noqa: F401
mark("import the CLI")
from restoreagent.imageio import load_image, save_image
image = load_image(sys.argv[1]); mark("read the photo")
import torch  # noqa: F401
mark("import torch")
from restoreagent.planners import PlanRequest, get_planner
planner = get_planner("vlm"); mark("load the planner")
answer = planner.plan(PlanRequest(image=image)); mark("plan")
from restoreagent.tools.registry import get_tool
tools = [get_tool(s.tool) for s in answer.plan]; mark("load the tools")
out = image
for tool in tools:
    out = tool(out)
mark("run the tools")
with tempfile.TemporaryDirectory() as d:
    save_image(out, d + "/out.png")
mark("write the result")
print(json.dumps({"plan": answer.plan.text(), "marks": marks}))
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    runs = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CHILD, args.photo], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"plan: {runs[0]['plan']}  ({args.runs} runs, medians)")
    print("| phase | wall (ms) | CPU (ms) |\n|---|---:|---:|")
    for i, (name, _, _) in enumerate(runs[0]["marks"]):
        wall = statistics.median(r["marks"][i][1] for r in runs)
        cpu = statistics.median(r["marks"][i][2] for r in runs)
        print(f"| {name} | {wall:.0f} | {cpu:.0f} |")
    total_wall = statistics.median(sum(m[1] for m in r["marks"]) for r in runs)
    total_cpu = statistics.median(sum(m[2] for m in r["marks"]) for r in runs)
    print(f"| total (inside the process) | {total_wall:.0f} | {total_cpu:.0f} |")


if __name__ == "__main__":
    main()
