"""Every job: one typed config, a smoke config that runs it end to end on a CPU in under a minute,
command-line options derived from the config, and the staged planner build as data."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from restoreagent.config import add_arguments, from_args, load, to_dict
from restoreagent.errors import RestoreAgentError
from restoreagent.jobs import JOBS, run_job, smoke_config
from restoreagent.jobs.build import BuildConfig

ROOT = Path(__file__).resolve().parents[1]


def test_every_job_has_a_smoke_config_that_loads():
    for name, job in JOBS.items():
        path = smoke_config(name)
        assert path.is_file(), f"{name}: no {path}"
        load(job.config_class(), [path])


def test_the_planner_build_is_data_and_every_stage_is_a_valid_job_config():
    cfg = load(BuildConfig, [ROOT / "configs" / "build" / "planner.yaml"], ["vars.samples=7"])
    assert list(cfg.stages)[:3] == ["data", "sft", "sft_train"] and cfg.stages["data"].config["samples"] == 7
    for stage in cfg.stages.values():
        job = JOBS[stage.job]
        load(job.config_class(), stage.files, values=stage.config)  # raises on an unknown or ill-typed setting
    assert "python -c" not in (ROOT / "configs" / "build" / "planner.yaml").read_text()


def test_unknown_settings_and_missing_values_are_one_clear_error():
    from restoreagent.jobs.train_planner import PlannerTrainConfig

    with pytest.raises(RestoreAgentError, match="batch_sise"):
        load(PlannerTrainConfig, [], ["train.batch_sise=3"])
    with pytest.raises(RestoreAgentError, match="choices: default, .*smolvlm_256m"):
        load(PlannerTrainConfig, [], ["planner=nope"])
    from restoreagent.jobs.label import SFTConfig

    with pytest.raises(RestoreAgentError, match="labeled"):
        load(SFTConfig, [], ["out=x"])


def test_command_line_options_come_from_the_config():
    from restoreagent.jobs.bench import BenchConfig

    p = argparse.ArgumentParser()
    add_arguments(p, BenchConfig)
    cfg = from_args(BenchConfig, p.parse_args(["--images", "a", "--out", "b", "--planners", "fixed,oracle", "--crop", "0",
                                               "--max-degradations", "2", "--metrics", "auto"]))
    assert cfg == BenchConfig(images="a", out="b", planners=("fixed", "oracle"), crop=None, max_degradations=2)
    assert "(default: 50)" in p.format_help() and "--max-degradations" in p.format_help()
    from restoreagent.jobs.label import LabelConfig

    q = argparse.ArgumentParser()
    add_arguments(q, LabelConfig)
    assert from_args(LabelConfig, q.parse_args(["--images", "x", "y", "--out", "o", "--samples", "1"])).images == ("x", "y")
    assert from_args(LabelConfig, q.parse_args(["--out", "o", "--samples", "1"])).images == LabelConfig(out="o", samples=1).images
    # the same config from a file and key=value overrides
    assert load(BenchConfig, [], ["images=a", "out=b", "planners=[fixed,oracle]", "crop=0", "max_degradations=2"]) == cfg


def test_flags_of_every_field_kind():
    from restoreagent.config import option

    @dataclass
    class Demo:
        name: str = option(help="positional", positional=True)
        words: tuple[str, ...] = option(("a",), "several words", nargs=True)
        on: bool = option(True, "on unless --no-on")
        off: bool = option(False, "off unless --off")
        limit: int | None = option(None, "a number or auto", none_word="auto")
        hidden: int = option(3, "not on the command line", cli=False)

    p = argparse.ArgumentParser()
    add_arguments(p, Demo)
    assert from_args(Demo, p.parse_args(["x"])) == Demo(name="x")
    got = from_args(Demo, p.parse_args(["x", "--words", "b", "c", "--no-on", "--off", "--limit", "7"]))
    assert got == Demo(name="x", words=("b", "c"), on=False, off=True, limit=7)
    assert from_args(Demo, p.parse_args(["x", "--limit", "auto"])).limit is None
    assert "--hidden" not in p.format_help()


@dataclass(frozen=True)
class Net:
    widths: tuple[int, ...] = (8, 16)


@dataclass(frozen=True)
class Frozen:
    steps: int = 1
    net: Net = field(default_factory=Net)


def test_frozen_configs_load_too():
    assert load(Frozen, [], ["steps=3", "net.widths=[4,5]"]) == Frozen(steps=3, net=Net(widths=(4, 5)))


def test_train_tool_settings_layer_defaults_declaration_command_line():
    from restoreagent.jobs.train_tool import ToolTrainConfig

    assert load(ToolTrainConfig, [], ["tool=unet_motion"]).train.batch_size == 8  # from its declaration
    assert load(ToolTrainConfig, [], ["tool=unet_motion", "train.batch_size=3"]).train.batch_size == 3
    assert load(ToolTrainConfig, [], ["tool=unet_denoise_mid"]).train.batch_size == 16  # the job default


def test_smoke_configs_run_every_job_end_to_end(tmp_path, monkeypatch):
    """The smoke build (label, build-sft, stage1-data, severity-targets, a LoRA train-planner, planner-merge),
    then bench and the default planner's train-planner: each under a minute. (train-tool's smoke config runs in
    tests/test_learned.py, train-perception's in tests/test_perception.py.)"""
    for link in ("examples", "configs"):
        (tmp_path / link).symlink_to(ROOT / link)
    monkeypatch.chdir(tmp_path)
    seconds = {}
    for name in ("build", "bench", "train-planner"):
        t0 = time.perf_counter()
        result = run_job(name, {}, files=[f"configs/smoke/{name}.yaml"])
        seconds[name] = time.perf_counter() - t0
        assert result, name
    out = tmp_path / "runs" / "smoke"
    assert (out / "labeled" / "README.md").is_file() and (out / "sft" / "dataset_dict.json").is_file()
    assert (out / "stage1_replay_sev" / "dataset_dict.json").is_file() and (out / "planner_merged" / "config.json").is_file()
    assert (out / "bench" / "results.json").is_file()
    assert (out / "planner" / "final" / "config.json").is_file()
    assert max(seconds.values()) < 60, seconds
    assert to_dict(load(BuildConfig, ["configs/smoke/build.yaml"]))["stages"]["merge"]["job"] == "planner-merge"
