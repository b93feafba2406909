"""``restoreagent detect PATH...``: which degradations each photo carries (registered by restoreagent.cli)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import RestoreAgentError


def add_detect_parser(sub):
    p = sub.add_parser(
        "detect",
        help="report which degradations each image carries, with probabilities and severities",
        description="Files and folders (searched recursively) are scored with one loaded detector. A file that "
        "cannot be read gets one error line; the others are still scored, and the exit status is 2 if any failed.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--json", action="store_true", help="a JSON list of {input, degradations, probabilities, severity, params}")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="also show the K most probable degradations")
    p.add_argument("--detector", metavar="FOLDER", help="a trained detector folder (default: the shipped one)")
    p.add_argument("--max-tiles", type=int, default=16, metavar="N", help="128 px tiles scored per image (default 16)")
    p.set_defaults(func=cmd_detect)
    return p


def expand_paths(paths) -> list[Path]:
    """Files as given, and every non-hidden file under each folder (sorted), in order."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and not any(s.startswith(".") for s in q.relative_to(p).parts))
        else:
            out.append(p)  # a missing file is reported when it is loaded
    return out


def cmd_detect(args, detector=None) -> int:
    """``detector``: an already loaded one (the command line passes its Agent's)."""
    from tqdm.auto import tqdm

    from ..imageio import load_image
    from .detector import Detector

    if args.top_k < 0:
        raise RestoreAgentError(f"--top-k must be 0 or more, got {args.top_k}")
    if args.max_tiles < 1:
        raise RestoreAgentError(f"--max-tiles must be at least 1, got {args.max_tiles}")
    files = expand_paths(args.paths)
    if not files:
        raise RestoreAgentError(f"{', '.join(args.paths)}: no files found")
    detector = detector or Detector(args.detector, max_tiles=args.max_tiles)
    results, failed = [], 0
    for path in tqdm(files, desc="detect", unit="image", disable=None if len(files) > 1 else True, file=sys.stderr):
        try:
            d = detector.detect(load_image(path), max_tiles=args.max_tiles)
        except RestoreAgentError as e:
            failed += 1
            msg = str(e) if str(path) in str(e) else f"{path}: {e}"
            tqdm.write(f"restoreagent: error: {msg}", file=sys.stderr)
            if args.json:
                results.append({"input": str(path), "error": msg})
            continue
        if args.json:
            results.append({"input": str(path), **d.to_json()})
        else:
            print(_describe(path, d, args.top_k))
    if args.json:
        print(json.dumps(results, indent=2))
    return 2 if failed else 0


def _describe(path, d, top_k: int) -> str:
    lines = [f"{path}: {', '.join(d.degradations) or 'clean (no degradation found)'}"]
    for name in d.degradations:
        params = ", ".join(f"{k}~{_fmt(v)}" for k, v in d.params[name].items())
        lines.append(f"  {name:<15} p={d.probabilities[name]:.2f}  severity {d.severity[name]:.2f} ({params})")
    if top_k:
        lines.append("  top: " + ", ".join(f"{n} {p:.2f}" for n, p in d.top(top_k)))
    return "\n".join(lines)


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 0.1 else f"{v:.1f}"
