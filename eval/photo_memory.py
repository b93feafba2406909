"""Peak memory of every tool on a large photo, through the registry (tiling as users get it).

    OMP_NUM_THREADS=1 nice python eval/photo_memory.py --size 6000x4000 --out runs/photo_memory.json

Each tool runs in a fresh subprocess on a random 6000x4000 (24 MP) float32 photo, as
``restoreagent run --plan`` calls it (``registry.get_tool(name)(image)``: classical tools tile
above ``RESTOREAGENT_CLASSICAL_TILE``, learned ones above ``RESTOREAGENT_TILE``). Reported: the
process's peak resident memory (``ru_maxrss``: Python, torch, the input photo and the output
included) and the wall time. ``--untiled`` also runs the named tools with tiling off, for comparison.
Results are appended to ``--out`` as they come, and tools already there are skipped (resumable).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np
from restoreagent.tools.registry import get_tool
name, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tool = get_tool(name)
img = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
t0 = time.perf_counter()
out = tool(img)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tool": name, "seconds": round(dt, 1), "peak_gb": round(peak / 1024 / 1024, 2)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", help="comma-separated (default: every available classical tool, plus --learned)")
    ap.add_argument("--learned", default="unet_denoise_mid,unet_sr_x2", help="learned tools to add to the default")
    ap.add_argument("--size", default="6000x4000", help="WxH")
    ap.add_argument("--untiled", default="", help="comma-separated tools to run once more with tiling off")
    ap.add_argument("--out", default="runs/photo_memory.json")
    args = ap.parse_args()
    from restoreagent.tools.registry import available_tools

    w, h = (int(v) for v in args.size.lower().split("x"))
    if args.tools:
        names = args.tools.split(",")
    else:
        names = [s.name for s in available_tools() if s.kind == "classical"] + [n for n in args.learned.split(",") if n]
    runs = [(n, True) for n in names] + [(n, False) for n in args.untiled.split(",") if n]
    out = Path(args.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    done = {(r["tool"], r["tiled"], r["size"]) for r in rows}
    for name, tiled in runs:
        if (name, tiled, args.size) in done:
            continue
        env = dict(os.environ)
        if not tiled:
            env["RESTOREAGENT_CLASSICAL_TILE"] = "0"
            env["RESTOREAGENT_TILE"] = "0"
        res = subprocess.run([sys.executable, "-c", CHILD, name, str(h), str(w)], capture_output=True, text=True, env=env)
        if res.returncode != 0:
            row = {"tool": name, "error": (res.stderr.strip().splitlines() or ["killed"])[-1][:200]}
        else:
            row = json.loads(res.stdout.strip().splitlines()[-1])
        row.update(tiled=tiled, size=args.size)
        rows.append(row)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1) + "\n")
        print(json.dumps(row), flush=True)
    print("\n| tool | tiled | peak memory (GB) | seconds |\n|---|---|---|---|")
    for r in rows:
        if r["size"] == args.size:
            print(f"| {r['tool']} | {'yes' if r['tiled'] else 'no'} | {r.get('peak_gb', r.get('error'))} | {r.get('seconds', '')} |")


if __name__ == "__main__":
    main()
