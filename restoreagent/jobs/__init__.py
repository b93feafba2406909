"""Every job of the project, each with ONE typed config: the only home of its defaults and help texts.

=================  ============================================  ======================================  ===================================
job                config (defaults, help)                       logic                                   front end
=================  ============================================  ======================================  ===================================
label              jobs.label.LabelConfig                        labeling.labeler.label_dataset          ``restoreagent label``
label-compact      jobs.label.CompactLabelConfig                 labeling.compact.label_compact          ``restoreagent job label-compact``
build-sft          jobs.label.SFTConfig                          labeling.sft.build_sft                  ``restoreagent dataset build-sft``
bench              jobs.bench.BenchConfig                        bench.run_bench                         ``restoreagent bench``
train-planner      jobs.train_planner.PlannerTrainConfig         planners.vlm.training.train             ``train/train_planner.py``
train-tool         jobs.train_tool.ToolTrainConfig               tools.learned.training.train_tool       ``train/train_tool.py``
train-perception   perception.config.PerceptionTrainConfig       perception.train.train                  ``train/train_perception.py``
train-fusion       jobs.train_fusion.FusionTrainConfig           fusion.train.train_fusion               ``restoreagent job train-fusion``
train-fusion-mix   jobs.train_fusion.FusionMixConfig             fusion.train.train_fusion_mix           ``restoreagent job train-fusion-mix``
train-ranker       jobs.train_ranker.RankerTrainConfig           planners.ranker.train.train_ranker      ``restoreagent job train-ranker``
verify-data        jobs.train_verifier.VerifyDataConfig          planners.verify.data.build              ``restoreagent job verify-data``
train-verifier     jobs.train_verifier.VerifierTrainConfig       planners.verify.train.train_verifier    ``restoreagent job train-verifier``
stage1-data        jobs.train_planner.Stage1DataConfig           planners.vlm.train_data                 build stage
severity-targets   jobs.build.SeverityTargetsConfig              planners.vlm.train_data                 build stage
planner-merge      jobs.build.MergeConfig                        planners.vlm.extend.merge_planner       ``restoreagent planner merge``
build              jobs.build.BuildConfig (a list of stages)     jobs.build.run_build                    ``restoreagent job build``
=================  ============================================  ======================================  ===================================

Any job also runs as ``restoreagent job NAME [--config FILE ...] [key=value ...]`` (``--show`` prints
the resolved config); ``configs/smoke/NAME.yaml`` runs it end to end on a CPU in under a minute.
This package imports only the configs; a job's logic is imported when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import CONFIGS, load, to_dict
from ..errors import RestoreAgentError


@dataclass(frozen=True)
class Job:
    name: str
    config: str  # "module:Class" of its typed config
    run: str  # "module:function" called with the config
    summary: str

    def config_class(self) -> type:
        return _ref(self.config)

    def runner(self) -> Callable[[Any], Any]:
        return _ref(self.run)


def _ref(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


JOBS: dict[str, Job] = {
    j.name: j
    for j in (
        Job("label", "restoreagent.jobs.label:LabelConfig", "restoreagent.labeling.labeler:label_dataset",
            "clean photos -> degraded crops -> every candidate pipeline scored (a dataset)"),
        Job("label-compact", "restoreagent.jobs.label:CompactLabelConfig", "restoreagent.labeling.compact:label_compact",
            "grow the committed compact labeled dataset (beam labeler, replayable records), resumably"),
        Job("build-sft", "restoreagent.jobs.label:SFTConfig", "restoreagent.labeling.sft:build_sft",
            "labeled trees -> the planner's SFT pairs"),
        Job("bench", "restoreagent.jobs.bench:BenchConfig", "restoreagent.bench:run_bench",
            "rank planners' pipelines among all pipelines"),
        Job("train-planner", "restoreagent.jobs.train_planner:PlannerTrainConfig",
            "restoreagent.planners.vlm.training:train", "train the VLM planner"),
        Job("train-tool", "restoreagent.jobs.train_tool:ToolTrainConfig",
            "restoreagent.tools.learned.training:train_tool", "train one learned tool"),
        Job("train-perception", "restoreagent.perception.config:PerceptionTrainConfig",
            "restoreagent.perception.train:train", "train the degradation detector"),
        Job("train-fusion", "restoreagent.jobs.train_fusion:FusionTrainConfig",
            "restoreagent.fusion.train:train_fusion", "train the fusion network (blends K candidate restorations)"),
        Job("train-fusion-mix", "restoreagent.jobs.train_fusion:FusionMixConfig",
            "restoreagent.fusion.train:train_fusion_mix", "train the fusion's whole-photo mix head of one task set"),
        Job("train-ranker", "restoreagent.jobs.train_ranker:RankerTrainConfig",
            "restoreagent.planners.ranker.train:train_ranker", "train the plan scorer on every labeled candidate's score"),
        Job("verify-data", "restoreagent.jobs.train_verifier:VerifyDataConfig", "restoreagent.planners.verify.data:build",
            "the verifier's data: the verify planner's candidates run on fresh crops and scored (resumable)"),
        Job("train-verifier", "restoreagent.jobs.train_verifier:VerifierTrainConfig",
            "restoreagent.planners.verify.train:train_verifier", "train the verify planner's verifier on verify-data"),
        Job("stage1-data", "restoreagent.jobs.train_planner:Stage1DataConfig",
            "restoreagent.planners.vlm.train_data:run_stage1_data", "the planner's stage-1 set from the generator"),
        Job("severity-targets", "restoreagent.jobs.build:SeverityTargetsConfig",
            "restoreagent.planners.vlm.train_data:run_severity_targets", "stage-1 targets with severity-matched tools"),
        Job("planner-merge", "restoreagent.jobs.build:MergeConfig", "restoreagent.planners.vlm.extend:run_merge",
            "a LoRA-trained planner folder as full weights"),
        Job("build", "restoreagent.jobs.build:BuildConfig", "restoreagent.jobs.build:run_build",
            "several jobs in order, from a YAML list of stages"),
    )
}


def get_job(name: str) -> Job:
    if name not in JOBS:
        raise RestoreAgentError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
    return JOBS[name]


def run_job(name: str, cfg, files: Sequence[str] = ()) -> Any:
    """Run job ``name`` on ``cfg``: its config, or a mapping of settings over its defaults (and ``files``)."""
    job = get_job(name)
    cls = job.config_class()
    return job.runner()(cfg if isinstance(cfg, cls) else load(cls, files, values=dict(cfg or {})))


def smoke_config(name: str):
    """The job's smoke config file (configs/smoke/NAME.yaml in a source checkout)."""
    return CONFIGS / "smoke" / f"{name}.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="YAML",
                   help="a file of overrides (several: applied in order); configs/smoke/NAME.yaml runs it small")
    p.add_argument("--show", action="store_true", help="print the resolved config as YAML and run nothing")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, e.g. train.max_steps=5 planner=smolvlm_256m")


def take_overrides(parser: argparse.ArgumentParser, extra: Sequence[str]) -> list[str]:
    """``key=value`` words argparse left over (they may follow an option); anything else is an error."""
    bad = [w for w in extra if w.startswith("-") or "=" not in w]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    return list(extra)


def run_from_args(name: str, args: argparse.Namespace) -> Any:
    import yaml

    cfg = load(get_job(name).config_class(), args.config, args.overrides)
    if args.show:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return None
    return run_job(name, cfg)


def main(name: str, argv: Sequence[str] | None = None) -> int:
    """The whole of a thin entry point (``train/*.py``): ``[--config FILE ...] [key=value ...]`` -> the job."""
    import json
    import logging

    job = get_job(name)
    p = argparse.ArgumentParser(prog=name, description=f"{job.summary} (settings: {job.config})")
    add_arguments(p)
    args, extra = p.parse_known_args(argv)
    args.overrides += take_overrides(p, extra)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = run_from_args(name, args)
    except RestoreAgentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if isinstance(result, dict):
        print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1, default=str))
    return 0
