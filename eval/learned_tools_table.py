"""Markdown table of the shipped learned tools, read from their weight files' own metadata.

    .venv/bin/python eval/learned_tools_table.py

Validation PSNR is measured at the end of training on pairs made from held-out training photos
(every 12th file of the train folders), with the tool's own degradation and severity range.
"""

from pathlib import Path

from restoreagent.catalog.spec import weights_path
from restoreagent.tools.learned.export import read_tool_meta
from restoreagent.tools.registry import list_specs


def main() -> None:
    print("| tool | task | trained on | params | file | guide | val PSNR in -> guide -> out (dB) | rebuild |")
    print("|---|---|---|---|---|---|---|---|")
    for s in list_specs():
        if s.kind != "learned" or not s.weights:
            continue
        path = weights_path(s.weights)
        meta = read_tool_meta(path)
        ranges = (
            ", ".join(f"{k} {v[0]}-{v[1]}" for k, v in (meta.get("ranges") or {}).items()) or "whole range"
        )
        guide = (
            ", ".join(g.get("tool") or g["function"].split(":")[1] for g in meta.get("guides") or []) or "-"
        )
        val = meta.get("val", {})
        psnrs = [val.get("val_psnr_in"), val.get("val_psnr_guide"), val.get("val_psnr_out")]
        psnr = " -> ".join(f"{v:.2f}" for v in psnrs if v is not None)
        size = Path(path).stat().st_size / 1e6
        print(
            f"| `{s.name}` | {s.task} | {meta['degradation']}, {ranges} | {meta['params'] / 1e3:.0f}k | "
            f"{size:.2f} MB | {guide} | {psnr} | `python train/train_tool.py tool={s.name}` |"
        )


if __name__ == "__main__":
    main()
