"""The agent loop (one-shot and stepwise with rollback) and the severity-matched teacher plans."""

import numpy as np

from restoreagent.agent import restore_auto
from restoreagent.dialogue import Answer, parse_answer
from restoreagent.planners.baselines import severity_matched_plan


class ScriptedPlanner:
    """Answers from a script and remembers the prompts' histories it was shown."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)
        self.histories = []

    def plan(self, request):
        self.histories.append(request.history)
        return parse_answer(self.answers.pop(0))


def test_one_shot_runs_the_whole_plan(astronaut_small):
    planner = ScriptedPlanner(["saw: noise, jpeg | plan: dejpeg:dejpeg_mild, denoise:dct_mid"])
    out, report = restore_auto(astronaut_small, planner=planner)
    assert report["mode"] == "one-shot"
    assert [s["tool"] for s in report["steps"]] == ["dejpeg_mild", "dct_mid"]
    assert out.shape == astronaut_small.shape


def test_stepwise_rolls_back_and_never_repeats_the_failed_step(astronaut_small):
    planner = ScriptedPlanner(
        [
            "saw: noise, jpeg | plan: dejpeg:dejpeg_severe, denoise:dct_high",
            "rollback",  # dejpeg_severe judged harmful
            "saw: noise, jpeg | plan: dejpeg:dejpeg_severe, denoise:dct_low",  # would repeat it: skipped
            "saw: jpeg | plan: dejpeg:dejpeg_mild",
            "saw: none | plan: none",
        ]
    )
    out, report = restore_auto(astronaut_small, planner=planner, stepwise=True)
    steps = [(s["tool"], s["kept"]) for s in report["steps"]]
    assert steps == [("dejpeg_severe", False), ("dct_low", True), ("dejpeg_mild", True)]
    assert report["plan"]["text"] == "denoise:dct_low, dejpeg:dejpeg_mild"
    # the planner was told what was rolled back and what was just done
    assert planner.histories[1].last_step.tool == "dejpeg_severe"
    assert planner.histories[2].rolled_back[0].tool == "dejpeg_severe"
    assert planner.histories[4].done[-1].tool == "dejpeg_mild" or planner.histories[4].last_step.tool == "dejpeg_mild"


def test_stepwise_rollback_restores_the_previous_image(astronaut_small):
    planner = ScriptedPlanner(["saw: noise | plan: denoise:dct_high", "rollback", "saw: none | plan: none"])
    out, report = restore_auto(astronaut_small, planner=planner, stepwise=True)
    assert np.array_equal(out, astronaut_small)
    assert report["steps"][0]["kept"] is False


def test_severity_matched_plan_picks_the_variant_for_the_severity():
    def plan(chain):
        return severity_matched_plan({"chain": [{"name": n, "params": p} for n, p in chain]}).text()

    assert plan([("noise", {"sigma": 8})]) == "denoise:dct_low"
    assert plan([("noise", {"sigma": 40})]) == "denoise:dct_high"
    assert plan([("noise", {"sigma": 22}), ("jpeg", {"quality": 12})]) == "dejpeg:dejpeg_severe, denoise:dct_mid"
    assert plan([("low_resolution", {"scale": 4}), ("haze", {"beta": 1.5, "A": 0.8})]) == "super_resolve:ibp_x4, dehaze:dcp_dense"
    assert Answer(("noise",), severity_matched_plan({"chain": [{"name": "noise", "params": {"sigma": 5}}]})).text() == "saw: noise | plan: denoise:dct_low"
