"""Peak memory and time of learned tools on a large photo (4000x3000), tiled and untiled.

    .venv/bin/python eval/tool_memory.py [--tools unet_denoise_mid,unet_sr] [--size 4000x3000] [--tiles 1024,0]

Each measurement runs in a fresh subprocess and reports its peak resident memory (ru_maxrss, which
includes Python, torch and the image buffers), the peak above the process's baseline after loading
the tool, and the wall time. ``--tiles 0`` runs the whole image at once (the memory tiling saves).
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
from restoreagent.tools.registry import get_tool, spec
from restoreagent.tools.learned import build_learned_tool
from restoreagent.catalog.spec import weights_path
name, h, w, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tool = build_learned_tool(str(weights_path(spec(name).weights)), tile=tile)
img = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
out = tool(img)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tool": name, "tile": tile, "seconds": dt, "peak_mb": peak / 1024, "above_base_mb": (peak - base) / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tools", default=None, help="comma-separated; default: every shipped learned tool")
    ap.add_argument("--size", default="4000x3000", help="WxH")
    ap.add_argument("--tiles", default="1024,0")
    args = ap.parse_args()
    from restoreagent.tools.registry import available_tools

    names = (
        args.tools.split(",") if args.tools else [s.name for s in available_tools() if s.kind == "learned"]
    )
    w, h = (int(v) for v in args.size.split("x"))
    print(
        f"| tool | tile | seconds | peak RSS MB | peak above baseline MB |  ({w}x{h} RGB float32)\n|---|---|---|---|---|"
    )
    for name in names:
        for tile in (int(t) for t in args.tiles.split(",")):
            res = subprocess.run(
                [sys.executable, "-c", CHILD, name, str(h), str(w), str(tile)], capture_output=True, text=True
            )
            if res.returncode:
                print(f"| {name} | {tile or 'none'} | failed: {res.stderr.strip().splitlines()[-1]} | | |")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(
                f"| {name} | {tile or 'none'} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | {r['above_base_mb']:.0f} |"
            )


if __name__ == "__main__":
    main()
