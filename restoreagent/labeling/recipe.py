"""One recipe, one command: label the train folders, then build the planner's SFT data.

``data_gen/label.py`` (hydra, ``configs/data/default.yaml``) calls :func:`run_recipe`; so can
anything holding the same mapping. Both steps resume: re-run the same command after a stop.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import RestoreAgentError


def _tuple(x):
    if x is None:
        return None
    return (x,) if isinstance(x, str) else tuple(x)


def run_recipe(cfg: Mapping, progress: bool = True) -> dict:
    """Label ``cfg['images']`` into ``cfg['out']/labeled``, then (``sft.build``) build ``cfg['out']/sft``."""
    from .labeler import DEV_SPLITS, LabelConfig, label_dataset, load_toolset_file
    from .sft import SFTConfig, build_sft

    images = _tuple(cfg.get("images"))
    if not images:
        raise RestoreAgentError("the data recipe needs images: one or more folders of clean train images")
    toolset = cfg.get("toolset")
    if isinstance(toolset, str):
        toolset = load_toolset_file(toolset)
    elif toolset is not None:
        toolset = {k: list(v) for k, v in dict(toolset).items()}
    out = Path(cfg["out"])
    label = LabelConfig(
        images=images,
        out=str(out / "labeled"),
        samples=int(cfg["samples"]),
        seed=int(cfg.get("seed", 0)),
        crop=cfg.get("crop") or None,
        crop_mode=cfg.get("crop_mode", "random"),
        combos_file=cfg.get("combos_file"),
        min_degradations=int(cfg.get("min_degradations", 1)),
        max_degradations=int(cfg.get("max_degradations", 4)),
        degradations=_tuple(cfg.get("degradations")),
        toolset=toolset,
        metrics=_tuple(cfg.get("metrics")),
        shard_size=int(cfg.get("shard_size", 64)),
        workers=int(cfg.get("workers", 1)),
        backend=cfg.get("backend", "local"),
        ray_address=cfg.get("ray_address"),
        forbid=tuple(cfg.get("dev_splits", DEV_SPLITS)),
    )
    result = {"labeled": label_dataset(label, progress=progress)}
    sft = cfg.get("sft") or {}
    if sft.get("build", True):
        result["sft"] = build_sft(
            SFTConfig(
                labeled=label.out,
                out=str(out / "sft"),
                seed=int(sft.get("seed", 0)),
                val_fraction=float(sft.get("val_fraction", 0.05)),
                clean_stop_prob=float(sft.get("clean_stop", 0.1)),
                rollbacks_per_sample=int(sft.get("rollbacks", 1)),
                detours_per_sample=int(sft.get("detours", 1)),
                workers=label.workers,
                backend=label.backend,
                ray_address=label.ray_address,
            ),
            progress=progress,
        )
    return result
