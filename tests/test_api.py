"""The public API: ``from restoreagent import Agent`` (restore, plan, detect, assess, alternatives)."""

import importlib.util
import logging
import subprocess
import sys
import threading

import numpy as np
import pytest

from restoreagent import Agent
from restoreagent.api import Result, contact_sheet
from restoreagent.degradations import degrade
from restoreagent.dialogue import parse_answer
from restoreagent.errors import ImageError, RestoreAgentError
from restoreagent.imageio import load_image


@pytest.fixture(scope="module")
def noisy_jpeg(astronaut_small):
    image, _ = degrade(astronaut_small, chain="noise:sigma=25,jpeg:quality=20", seed=0)
    return image


@pytest.fixture(scope="module")
def vlm_agent():
    return Agent(device="cpu")  # the shipped planner, loaded once for the module


def test_import_is_light_and_fast():
    code = (
        # CPU time, not wall time: the test machine's other work must not make the test fail
        "import sys, time; t = time.process_time(); from restoreagent import Agent; dt = time.process_time() - t; "
        "print(dt, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False"]  # no torch until first use
    assert float(out[0]) < 1.0


def test_restore_with_a_plan_array_and_path(tmp_path, astronaut_png, noisy_jpeg, caplog, capsys):
    agent = Agent(planner="fixed+detect", device="cpu")
    assert agent._planner is None and agent._detector is None  # nothing loaded before first use
    with caplog.at_level(logging.INFO, logger="restoreagent"):
        result = agent.restore(noisy_jpeg, plan="denoise:dct_mid, dejpeg:dejpeg_mild")
    assert isinstance(result, Result) and result.image.shape == noisy_jpeg.shape and result.image.dtype == np.float32
    assert result.plan.text() == "denoise:dct_mid, dejpeg:dejpeg_mild"
    assert [s["tool"] for s in result.steps] == ["dct_mid", "dejpeg_mild"]
    assert result.report["mode"] == "plan" and result.report["seconds"] > 0
    assert not np.allclose(result.image, noisy_jpeg)
    assert "step 1: denoise" in caplog.text and capsys.readouterr().out == ""  # logging, not print
    assert agent._planner is None  # an explicit plan needs no planner
    # uint8 arrays are accepted, and saving honours the JPEG quality
    as_uint8 = agent.restore((noisy_jpeg * 255).round().astype(np.uint8), plan="denoise:dct_mid")
    assert np.abs(as_uint8.image - agent.restore(noisy_jpeg, plan="denoise:dct_mid").image).max() < 0.02
    small, big = result.save(tmp_path / "q20.jpg", quality=20), result.save(tmp_path / "q95.jpg", quality=95)
    assert small.stat().st_size < big.stat().st_size
    # a result from a file never overwrites that file
    from_file = agent.restore(astronaut_png, plan="none")
    assert from_file.report["input"] == str(astronaut_png) and from_file.plan.text() == "none"
    with pytest.raises(ImageError, match="refusing to overwrite the input"):
        from_file.save(astronaut_png)


def test_fixed_detect_plans_from_the_image(noisy_jpeg):
    agent = Agent(planner="fixed+detect", device="cpu")
    detection = agent.detect(noisy_jpeg)
    assert "noise" in detection.degradations
    answer = agent.plan(noisy_jpeg)
    assert "denoise" in answer.plan.tasks and tuple(detection.degradations) == answer.degradations
    result = agent.restore(noisy_jpeg)
    assert result.plan == answer.plan and result.report["answers"] == [answer.text()]


def test_fixed_planner_is_told_the_detectors_set(noisy_jpeg):
    """`plan --planner fixed` used to fail (the recipe needs a degradation set): the detector's is given."""
    answer = Agent(planner="fixed", device="cpu").plan(noisy_jpeg)
    assert "denoise" in answer.plan.tasks


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(RestoreAgentError, match="unknown planner 'nope'"):
        Agent(planner="nope")
    with pytest.raises(RestoreAgentError, match="oracle"):
        Agent(planner="oracle")
    with pytest.raises(RestoreAgentError, match="tile"):
        Agent(tile=-1)
    agent = Agent(planner="fixed+detect")
    with pytest.raises(RestoreAgentError, match="shape"):
        agent.restore(np.zeros((4, 4, 2), np.float32), plan="none")
    with pytest.raises(ImageError, match="file not found"):
        agent.restore(tmp_path / "missing.png", plan="none")
    with pytest.raises(RestoreAgentError, match="unknown tool"):
        agent.restore(np.zeros((8, 8, 3), np.float32), plan="denoise:nope")
    with pytest.raises(RestoreAgentError, match="stepwise"):
        agent.restore(np.zeros((8, 8, 3), np.float32), plan="denoise:dct_mid", stepwise=True)


def test_device_and_tile_reach_the_learned_tools(monkeypatch, noisy_jpeg):
    for var in ("RESTOREAGENT_TILE", "RESTOREAGENT_DEVICE", "RESTOREAGENT_HALF"):
        monkeypatch.delenv(var, raising=False)
    tiled = Agent(planner="fixed+detect", device="cpu", tile=160)
    runner = tiled.tool("unet_denoise_mid")._fn
    assert runner.tile == 160 and runner.device.type == "cpu"
    plain = Agent(planner="fixed+detect", device="cpu", tile=0)
    assert plain.tool("unet_denoise_mid")._fn.tile == 0
    a = tiled.restore(noisy_jpeg, plan="denoise:unet_denoise_mid").image
    b = plain.restore(noisy_jpeg, plan="denoise:unet_denoise_mid").image
    assert np.abs(a - b).mean() < 0.01  # tiles blend into nearly the same image
    assert tiled.tool("unet_denoise_mid") is runner or tiled.tool("unet_denoise_mid")._fn is runner  # built once


def test_plans_add_the_recipe_when_the_planner_did_not_propose_it(noisy_jpeg):
    class TwoPlans:
        name = "scripted"

        def plan(self, request):
            return parse_answer("saw: noise | plan: denoise:dct_low")

        def plan_candidates(self, request, k):  # the beams repeat the planner's answer: it is kept once
            return [parse_answer("saw: noise | plan: denoise:dct_high"), parse_answer("saw: noise | plan: denoise:dct_low")]

    agent = Agent(planner="default", device="cpu")
    agent._planner = TwoPlans()
    answers = agent.plans(noisy_jpeg, k=3)
    recipe = Agent(planner="fixed+detect", device="cpu").plan(noisy_jpeg)
    assert [a.plan.text() for a in answers] == ["denoise:dct_low", recipe.plan.text(), "denoise:dct_high"]


def test_alternatives_are_distinct_executed_and_share_prefixes(vlm_agent, noisy_jpeg, tmp_path):
    results = vlm_agent.alternatives(noisy_jpeg, k=4)
    plans = [r.plan.text() for r in results]
    assert len(results) == 4 and len(set(plans)) == 4, plans
    assert results[0].plan == vlm_agent.plan(noisy_jpeg).plan  # the first is the planner's own answer
    for r in results:
        assert r.image.shape == noisy_jpeg.shape and set(r.report["scores"]) == {"noise", "exposure"}
    # an executed prefix is not run twice: its later uses cost 0 s
    first_steps = [r.plan.steps[0] for r in results if r.plan.steps]
    if len(first_steps) != len(set(first_steps)):
        assert any(s["seconds"] == 0.0 for r in results for s in r.steps)
    # picking one executes only that plan, with the same pixels
    picked = vlm_agent.alternatives(noisy_jpeg, k=4, only=3)
    assert len(picked) == 1 and picked[0].plan == results[2].plan
    np.testing.assert_array_equal(picked[0].image, results[2].image)
    sheet = contact_sheet(noisy_jpeg, results, tmp_path / "sheet.png")
    img = load_image(sheet)
    assert img.shape[1] > 5 * 300 and img.shape[0] > 128  # the input and four results, captioned


def test_agent_restore_auto_and_stepwise(vlm_agent, noisy_jpeg):
    result = vlm_agent.restore(noisy_jpeg)
    assert result.report["mode"] == "one-shot" and "denoise" in result.plan.tasks
    stepwise = vlm_agent.restore(noisy_jpeg, stepwise=True)
    assert stepwise.report["mode"] == "stepwise" and stepwise.plan.tasks
    assert all(s["task"] in stepwise.plan.tasks for s in stepwise.steps if s["kept"])


def test_an_agent_can_be_shared_between_threads(noisy_jpeg):
    agent = Agent(planner="fixed+detect", device="cpu")
    expected = agent.restore(noisy_jpeg).image
    outs, errors = [None] * 4, []

    def work(i):
        try:
            outs[i] = agent.restore(noisy_jpeg).image
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for out in outs:
        np.testing.assert_array_equal(out, expected)


def test_assess_delegates_to_the_assess_module(noisy_jpeg, astronaut_small):
    agent = Agent(planner="fixed+detect", device="cpu")
    if importlib.util.find_spec("restoreagent.assess") is None:  # the assess module lands separately
        with pytest.raises(RestoreAgentError, match="assess is not available"):
            agent.assess(noisy_jpeg)
    else:
        report = agent.assess(noisy_jpeg, ref=astronaut_small)
        assert isinstance(report, dict) and report


def test_docstring_examples_run():
    import doctest

    import restoreagent.api

    outcome = doctest.testmod(restoreagent.api)
    assert outcome.attempted >= 3 and outcome.failed == 0


def test_restore_only_a_region_keeps_the_rest_bit_for_bit():
    from restoreagent import Agent

    rng = np.random.default_rng(0)
    photo = rng.random((96, 96, 3), dtype=np.float32)
    agent = Agent(planner="fixed+detect")
    r = agent.restore(photo, plan="denoise:dct_low", box=(10, 12, 30, 20), margin=8, feather=4)
    far = np.ones((96, 96), bool)
    far[12 - 5 : 12 + 20 + 5, 10 - 5 : 10 + 30 + 5] = False  # the box widened by the feather (+1)
    assert (r.image[far] == photo[far]).all()
    assert not np.array_equal(r.image[12:32, 10:40], photo[12:32, 10:40])  # the box was restored
    assert r.report["region"]["crop"] == [0, 0, 52, 44]  # the box + feather (4) + margin (8), clipped at 0
    assert r.plan.text() == "denoise:dct_low"
    mask = np.zeros((96, 96), bool)
    mask[40:60, 40:60] = True
    m = agent.restore(photo, plan="denoise:dct_low", mask=mask, feather=0, margin=0)
    assert (m.image[~mask] == photo[~mask]).all()
    with pytest.raises(RestoreAgentError):
        agent.restore(photo, plan="denoise:dct_low", box=(0, 0, 8, 8), mask=mask)


def test_restore_fused_blends_the_plan_and_its_neighbours():
    from restoreagent import Agent
    from restoreagent.fusion import candidate_plans, run_plans
    from restoreagent.plan import parse_plan

    rng = np.random.default_rng(1)
    photo = rng.random((48, 48, 3), dtype=np.float32)
    r = Agent(planner="fixed+detect").restore(photo, plan="denoise:dct_low", fuse=3)
    assert r.report["mode"] == "fused" and len(r.report["candidates"]) == 3
    outs = np.stack(run_plans(photo, candidate_plans(parse_plan("denoise:dct_low"), 3)))
    # a convex combination of its candidates: inside their per-pixel range
    assert (r.image >= outs.min(0) - 1e-4).all() and (r.image <= outs.max(0) + 1e-4).all()
