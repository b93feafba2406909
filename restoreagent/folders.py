"""``restoreagent run DIR_OR_FILES... -o OUTDIR``: many photos with one loaded Agent.

- Outputs keep the input's path relative to the folder given (a file given alone: its name),
  each with a JSON report beside it (``OUT.json``); ``summary.json`` and ``summary.csv`` list all.
- Resumable: an output whose report exists is done and skipped (``--overwrite`` redoes it). The
  report is written after the image, so an image without its report is redone.
- A file that fails gets one error line and the others go on; the exit status is 2 if any failed.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import time
from pathlib import Path

from .errors import RestoreAgentError
from .imageio import IMAGE_SUFFIXES, SAVE_FORMATS, atomic_write_text, check_output_path, load_photo


def plan_outputs(inputs, outdir, ext: str | None = None) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs: folders searched recursively, relative paths kept.

    Files under ``outdir`` are never inputs (an output folder inside an input folder is fine).
    """
    outdir = Path(outdir)
    if ext is not None:
        ext = "." + ext.lower().lstrip(".")
        if ext not in SAVE_FORMATS:
            raise RestoreAgentError(f"--ext {ext[1:]!r}: use one of {', '.join(s[1:] for s in sorted(SAVE_FORMATS))}")
    out_resolved = outdir.resolve()
    pairs: list[tuple[Path, Path]] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(
                q
                for q in p.rglob("*")
                if q.is_file()
                and q.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in q.relative_to(p).parts)
                and not q.resolve().is_relative_to(out_resolved)
            )
            pairs += [(q, q.relative_to(p)) for q in found]
        else:
            pairs.append((p, Path(p.name)))  # a missing or unreadable file fails when loaded
    if not pairs:
        raise RestoreAgentError(f"{', '.join(map(str, inputs))}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    out: list[tuple[Path, Path]] = []
    seen: dict[Path, Path] = {}
    for inp, rel in pairs:
        suffix = ext or (rel.suffix.lower() if rel.suffix.lower() in SAVE_FORMATS else ".png")
        target = outdir / rel.with_suffix(suffix)
        if target in seen:
            raise RestoreAgentError(f"{inp} and {seen[target]} would both be written to {target}")
        seen[target] = inp
        out.append((inp, target))
    return out


def run_folder(agent, args) -> int:
    """The folder form of ``run`` (args: inputs, output, auto/plan/stepwise/checks, overwrite, ext,
    jpeg_quality, save_steps, json)."""
    from tqdm.auto import tqdm

    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise RestoreAgentError(f"{outdir}: -o must be a folder when several images are restored")
    pairs = plan_outputs(args.inputs, outdir, args.ext)
    for inp, target in pairs:  # nothing is written over an input
        check_output_path(target, inp)
    kwargs = {"plan": "auto", "stepwise": args.stepwise, "quality_check": args.checks} if args.auto else {"plan": args.plan}
    rows, failed, t0 = [], 0, time.perf_counter()
    logger = logging.getLogger("restoreagent")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))  # the progress bar, not every step of every image
    try:
        for inp, target in tqdm(pairs, desc="restore", unit="image", file=sys.stderr, disable=None):
            failed += _restore_one(agent, args, inp, target, outdir, kwargs, rows)
    finally:
        logger.setLevel(level)
    summary = {
        "images": len(rows),
        "restored": sum(r["status"] == "restored" for r in rows),
        "done_before": sum(r["status"] == "done before" for r in rows),
        "failed": failed,
        "seconds": round(time.perf_counter() - t0, 3),
        "rows": rows,
    }
    outdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(outdir / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(outdir / "summary.csv", _csv(rows))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{summary['restored']} restored, {summary['done_before']} done before, {failed} failed "
            f"({summary['seconds']:.1f} s); reports in {outdir}/summary.json and summary.csv"
        )
    return 2 if failed else 0


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _row(inp: Path, target: Path, status: str, report: dict) -> dict:
    plan = report.get("plan", {})
    return {
        "input": str(inp),
        "output": str(target),
        "status": status,
        "plan": plan.get("text", "") if isinstance(plan, dict) else "",
        "seconds": report.get("seconds", ""),
        "error": report.get("error", ""),
    }


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["input", "output", "status", "plan", "seconds", "error"])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _restore_one(agent, args, inp: Path, target: Path, outdir: Path, kwargs: dict, rows: list) -> int:
    """Restore one image of a folder run into ``target`` (with its report); 1 if it failed."""
    from tqdm.auto import tqdm

    report_path = Path(f"{target}.json")
    if not args.overwrite and target.is_file() and report_path.is_file():
        rows.append(_row(inp, target, "done before", _read(report_path)))
        return 0
    try:
        steps = Path(args.save_steps) / target.relative_to(outdir).with_suffix("") if args.save_steps else None
        image, info = load_photo(inp)
        result = agent.restore(image, save_steps=steps, **kwargs)
        result.source, result.info = str(inp), info
        result.save(target, quality=args.jpeg_quality)
        report = {"input": str(inp), "output": str(target), **{k: v for k, v in result.report.items() if k != "input"}}
        atomic_write_text(report_path, json.dumps(report, indent=2))
        rows.append(_row(inp, target, "restored", report))
        return 0
    except (RestoreAgentError, MemoryError, OSError) as e:
        msg = f"{inp}: out of memory" if isinstance(e, MemoryError) else (str(e) if str(inp) in str(e) else f"{inp}: {e}")
        tqdm.write(f"restoreagent: error: {msg}", file=sys.stderr)
        rows.append(_row(inp, target, "failed", {"error": msg}))
        return 1
