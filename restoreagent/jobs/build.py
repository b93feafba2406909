"""The ``build`` job: several jobs in order, from a YAML list of stages (e.g. ``configs/build/planner.yaml``).

Run: ``restoreagent job build --config configs/build/planner.yaml [only=[sft,sft_train]] [vars.workers=4]``.
Every stage names a job (:mod:`restoreagent.jobs`) and the settings it changes; ``${vars.NAME}``
shares a value between stages. Stages are resumable jobs (labeling, SFT building and planner
training continue where they stopped; ``skip_if_exists`` guards the others), so a stopped build
is continued by running the same command again. Small: ``configs/smoke/build.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import option
from ..errors import RestoreAgentError
from . import run_job


@dataclass
class Stage:
    job: str = option(help="the job to run (restoreagent job --list)")
    files: tuple[str, ...] = option((), "YAML files of its settings (e.g. configs/smoke/label.yaml), applied in order")
    config: dict[str, Any] = option(help="its settings: overrides of the job's defaults (and of `files`)", factory=dict)
    skip_if_exists: str | None = option(None, "skip the stage when this path exists (for jobs that do not resume)")


@dataclass
class BuildConfig:
    stages: dict[str, Stage] = option(help="stage name -> stage, run in the order written", factory=dict)
    vars: dict[str, Any] = option(help="values the stages share, written ${vars.NAME}", factory=dict)
    only: tuple[str, ...] | None = option(None, "run these stages only (default: all)")
    skip: tuple[str, ...] = option((), "stages not to run")


@dataclass
class SeverityTargetsConfig:
    """Rewrite a stage-1 planner dataset's targets so each tool is matched to the recorded severity."""

    src: str = option(help="a stage-1 dataset (stage1-data job)")
    dst: str = option(help="where to write the rewritten copy")


@dataclass
class MergeConfig:
    """Write a LoRA-trained planner folder (base + adapter/) as full weights."""

    source: str = option(help="planner folder with an adapter/ (never modified)")
    output: str = option(help="where to write the merged planner")
    force: bool = option(False, "replace output when it exists")


def run_build(cfg: BuildConfig) -> dict:
    names = list(cfg.stages)
    unknown = [n for n in list(cfg.only or ()) + list(cfg.skip) if n not in names]
    if unknown:
        raise RestoreAgentError(f"build: no stage {unknown[0]!r}; stages: {', '.join(names)}")
    done = {}
    for name, stage in cfg.stages.items():
        if (cfg.only is not None and name not in cfg.only) or name in cfg.skip:
            continue
        if stage.skip_if_exists and Path(stage.skip_if_exists).exists():
            print(f"build: {name}: skipped ({stage.skip_if_exists} exists)", flush=True)
            continue
        print(f"build: {name}: {stage.job}", flush=True)
        result = run_job(stage.job, stage.config, files=stage.files)
        done[name] = {k: v for k, v in result.items() if k != "history"} if isinstance(result, dict) else str(result)
    return {"stages": done}
