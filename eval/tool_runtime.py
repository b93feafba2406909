"""Runtime of every available tool on a 512x512 image (skimage's astronaut), median of N runs.

    .venv/bin/python eval/tool_runtime.py [--runs 5] [--update-catalog]

Prints a markdown table (docs/benchmarks.md). --update-catalog writes the medians into the
cost_s fields of the tool catalogue (restoreagent/catalog/tools.yaml and the learned tools'
declarations, restoreagent/catalog/learned/NAME.yaml): the figure `restoreagent tools` shows.
"""

import argparse
import re
import statistics
import time
from pathlib import Path

import numpy as np
from skimage import data

from restoreagent.degradations import degrade
from restoreagent.tasks import DEGRADATION_FOR_TASK
from restoreagent.tools.registry import available_tools, get_tool


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--update-catalog", action="store_true")
    args = ap.parse_args()
    clean = data.astronaut().astype(np.float32) / 255.0  # 512x512
    rows = []
    for spec in available_tools():
        # time each tool on its own degradation (some tools' cost depends on the content)
        img, _ = degrade(clean, chain=DEGRADATION_FOR_TASK[spec.task], seed=0)
        tool = get_tool(spec.name)
        tool(img)  # warm-up (imports, caches)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            tool(img)
            times.append(time.perf_counter() - t0)
        rows.append((spec, statistics.median(times)))
    print(f"| task | tool | median s at 512x512 ({args.runs} runs) |\n|---|---|---|")
    for spec, t in rows:
        print(f"| {spec.task} | {spec.name} | {t:.3f} |")
    if args.update_catalog:
        catalog = Path(__file__).resolve().parents[1] / "restoreagent" / "catalog"
        for path in sorted(catalog.glob("tools*.yaml")):
            text = path.read_text()
            for spec, t in rows:
                # replace the cost_s line inside this tool's entry (if the entry is in this file)
                pattern = rf"(- name: {re.escape(spec.name)}\n(?:(?!- name:).*\n)*?\s+cost_s: )[0-9.]+"
                text = re.sub(pattern, lambda m, t=t: f"{m.group(1)}{t:.3f}", text, count=1)
            path.write_text(text)
        for spec, t in rows:  # a learned tool's declaration: its own file
            decl = catalog / "learned" / f"{spec.name}.yaml"
            if decl.is_file():
                decl.write_text(re.sub(r"^cost_s: [0-9.]+", f"cost_s: {t:.3f}", decl.read_text(), count=1, flags=re.M))

if __name__ == "__main__":
    main()
