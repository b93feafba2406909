"""One-shot `run --auto` judges each step with the quality checks (restoreagent.quality.execute_checked)."""

from __future__ import annotations

import numpy as np
import pytest

from restoreagent.agent import restore_auto
from restoreagent.dialogue import parse_answer
from restoreagent.quality import noise_level

TOYS = [
    ("qc1_noisy", "denoise", "toytools:add_noise", {"sigma": 0.08}),
    ("qc1_brighter", "brighten", "toytools:offset", {"b": 0.3}),
    ("qc1_gain", "brighten", "toytools:gain", {"g": 4.0}),
]


class OneAnswer:
    name = "scripted"

    def __init__(self, text):
        self.text = text

    def plan(self, request):
        return parse_answer(self.text)


@pytest.fixture
def toys():
    from restoreagent.tools import registry

    for name, task, fn, params in TOYS:
        registry.register(registry.ToolSpec(name=name, task=task, kind="classical", description="test", function=fn, params=params))
    yield
    for name, *_ in TOYS:
        registry._EXTRA_SPECS.pop(name, None)
    registry.get_tool.cache_clear()


def test_a_harmful_step_is_skipped_and_the_rest_runs(astronaut_small, toys):
    planner = OneAnswer("saw: noise, low_light | plan: denoise:qc1_noisy, brighten:qc1_brighter")
    out, report = restore_auto(astronaut_small, planner=planner)
    steps = {s["tool"]: s for s in report["steps"]}
    assert steps["qc1_noisy"]["kept"] is False and steps["qc1_noisy"]["rolled_back_by"] == "quality"
    # the astronaut is not dark: brightening it moves its mean away from mid-grey, also rejected
    assert steps["qc1_brighter"]["kept"] is False
    assert np.array_equal(out, astronaut_small) and report["plan"]["steps"] == []


def test_no_check_runs_the_whole_plan(astronaut_small, toys):
    planner = OneAnswer("saw: noise | plan: denoise:qc1_noisy")
    out, report = restore_auto(astronaut_small, planner=planner, quality_check="none")
    assert noise_level(out) > noise_level(astronaut_small) + 5 and report["steps"][0]["kept"]


def test_noise_revealed_by_brightening_is_removed(astronaut_small, toys):
    rng = np.random.default_rng(0)
    dark = np.clip(astronaut_small * 0.2 + rng.normal(0, 1.5 / 255, astronaut_small.shape), 0, 1).astype(np.float32)
    planner = OneAnswer("saw: low_light | plan: brighten:qc1_gain")
    out, report = restore_auto(dark, planner=planner)
    brighten, follow = report["steps"]
    assert brighten["kept"] and brighten["noise_revealed"]["after"] > brighten["noise_revealed"]["before"] + 1
    assert follow["task"] == "denoise" and follow["added_by"] == "noise revealed by brighten" and follow["kept"]
    assert noise_level(out) < brighten["noise_revealed"]["after"]
    assert [s["task"] for s in report["plan"]["steps"]] == ["brighten", "denoise"]
