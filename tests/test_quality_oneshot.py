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
    ("qc1_smooth", "denoise", "toytools:smooth", {"k": 5}),
    ("qc1_keep", "denoise", "toytools:gain", {"g": 1.0}),  # a denoiser that removes nothing
    ("qc1_darken", "dehaze", "toytools:gain", {"g": 0.8}),
    ("qc1_dejpeg", "dejpeg", "toytools:smooth", {"k": 3}),
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
    brighten, *follow = report["steps"]
    assert brighten["kept"] and brighten["noise_revealed"]["after"] > brighten["noise_revealed"]["before"] + 1
    assert all(f["task"] == "denoise" and f["added_by"] == "noise revealed by brighten" for f in follow)
    assert [f["kept"] for f in follow] == [False] * (len(follow) - 1) + [True]  # escalated until one is kept
    assert noise_level(out) < brighten["noise_revealed"]["after"]
    assert [s["task"] for s in report["plan"]["steps"]] == ["brighten", "denoise"]


# --- the rules of docs/real_photos.md: haze pre-check, faint-noise PIQE, escalating follow-up -----


def _smooth_photo(astronaut_small):
    """The astronaut without its fine texture: the noise measure reads it as nearly clean."""
    import cv2

    return cv2.GaussianBlur(astronaut_small, (0, 0), 1.0)


def test_dehaze_does_not_run_on_a_photo_without_haze(astronaut_small, toys):
    from restoreagent.degradations import apply_degradation
    from restoreagent.degradations.params import complete_params
    from restoreagent.quality import HAZE_FLOOR, haze_level

    planner = OneAnswer("saw: haze | plan: dehaze:qc1_darken")
    assert haze_level(astronaut_small) < HAZE_FLOOR
    out, report = restore_auto(astronaut_small, planner=planner)
    (step,) = report["steps"]
    assert step["skipped"] and not step["kept"] and step["rolled_back_by"] == "quality"
    assert step["quality"][0]["check"] == "haze" and step["quality"][0]["rejected"]
    assert np.array_equal(out, astronaut_small)
    # a hazy photo: the same step runs (and nothing judges dehazing after it)
    rng = np.random.default_rng(0)
    hazy = apply_degradation(astronaut_small, "haze", complete_params("haze", {"beta": 1.0}, rng), rng)
    assert haze_level(hazy) >= HAZE_FLOOR
    out, report = restore_auto(hazy, planner=planner)
    (step,) = report["steps"]
    assert step["kept"] and not step.get("skipped") and np.allclose(out, hazy * 0.8)
    # no checks, no pre-check: the plan as the planner gave it
    out, report = restore_auto(astronaut_small, planner=planner, quality_check="none")
    assert np.allclose(out, astronaut_small * 0.8)


def test_haze_level_sees_airlight_not_grey():
    from skimage import data

    from restoreagent.quality import HAZE_FLOOR, haze_level

    grey = np.repeat(data.camera()[::4, ::4, None] / 255.0, 3, axis=2).astype(np.float32)  # grey, with shadows
    assert haze_level(grey) < HAZE_FLOOR
    veiled = 0.6 * grey + 0.4 * 0.9  # the same under airlight: nothing stays black
    assert haze_level(veiled) > 2 * HAZE_FLOOR
    assert haze_level(np.zeros((2, 5, 3), np.float32)) == 0.0  # tiny images do not fail


def test_faint_noise_denoising_is_judged_by_piqe(astronaut_small, toys):
    from toytools import add_noise

    from restoreagent.quality import FAINT_NOISE

    planner = OneAnswer("saw: noise | plan: denoise:qc1_smooth")
    faint = add_noise(_smooth_photo(astronaut_small), 1 / 255)
    assert noise_level(faint) < FAINT_NOISE
    out, report = restore_auto(faint, planner=planner)
    (step,) = report["steps"]
    rule = [v for v in step["quality"] if v.get("rule") == "faint noise"]
    assert rule and rule[0]["check"] == "piqe" and rule[0]["rejected"] and not step["kept"]
    assert np.array_equal(out, faint)
    # clear noise: PIQE does not judge the same denoiser, which is kept
    noisy = add_noise(_smooth_photo(astronaut_small), 10 / 255)
    assert noise_level(noisy) > FAINT_NOISE
    out, report = restore_auto(noisy, planner=planner)
    (step,) = report["steps"]
    assert step["kept"] and not any(v.get("rule") for v in step.get("quality", []))
    assert noise_level(out) < noise_level(noisy)


def test_faint_noise_rule_is_in_the_stepwise_agent_too(astronaut_small, toys):
    from toytools import add_noise

    from restoreagent.agent import stepwise_restore

    class Stepwise:
        name = "scripted"

        def plan(self, request):
            done = {s.task for s in request.history.done} | {s.task for s in request.history.rolled_back}
            return parse_answer("saw: noise, haze | plan: " + ", ".join(
                t for t in ("denoise:qc1_smooth", "dehaze:qc1_darken") if t.split(":")[0] not in done))

    faint = add_noise(_smooth_photo(astronaut_small), 1 / 255)
    run = stepwise_restore(faint, Stepwise())
    by_task = {s["task"]: s for s in run.steps}
    assert by_task["denoise"]["rolled_back_by"] == "quality"  # PIQE, faint noise
    assert by_task["dehaze"]["skipped"]  # no haze: not run
    assert np.array_equal(run.image, faint)


def _escalation_case(astronaut_small, monkeypatch, stronger_output):
    """A dark noisy photo brightened 4x; the matched denoiser removes nothing, the stronger one
    returns ``stronger_output(brightened clean photo, brightened image)``."""
    from restoreagent import quality
    from restoreagent.executor import run_step
    from restoreagent.plan import Step

    monkeypatch.setattr(quality, "denoiser_for", lambda sigma: "qc1_keep")
    monkeypatch.setattr(quality, "denoisers_by_strength", lambda: ["qc1_keep", "qc1_smooth"])
    rng = np.random.default_rng(0)
    dark = np.clip(astronaut_small * 0.2 + rng.normal(0, 3 / 255, astronaut_small.shape), 0, 1).astype(np.float32)
    bright_clean = np.clip(astronaut_small * 0.8, 0, 1).astype(np.float32)

    def runner(image, step: Step):
        if step.tool == "qc1_smooth":
            return stronger_output(bright_clean, image), 0.0
        return run_step(image, step)

    return dark, restore_auto(dark, planner=OneAnswer("saw: low_light | plan: brighten:qc1_gain"), step_runner=runner)


def test_follow_up_denoiser_escalates_until_the_revealed_noise_is_gone(astronaut_small, toys, monkeypatch):
    # the stronger one leaves a fifth of the noise (PIQE at 128 px rates a flat clean photo worse)
    dark, (out, report) = _escalation_case(
        astronaut_small, monkeypatch, lambda clean, noisy: (clean + 0.2 * (noisy - clean)).astype(np.float32)
    )
    brighten, weak, strong = report["steps"]
    assert brighten["kept"] and brighten["noise_revealed"]["after"] > brighten["noise_revealed"]["before"] + 1
    assert weak["tool"] == "qc1_keep" and not weak["kept"] and weak["rolled_back_by"] == "quality"
    (why,) = [v for v in weak["quality"] if v["rejected"]]
    assert why["rule"] == "revealed noise" and why["before"] == pytest.approx(brighten["noise_revealed"]["before"], abs=1e-3)
    assert strong["tool"] == "qc1_smooth" and strong["kept"]
    assert noise_level(out) < brighten["noise_revealed"]["after"] / 2
    assert [s["tool"] for s in report["plan"]["steps"]] == ["qc1_gain", "qc1_smooth"]


def test_a_stronger_denoiser_that_loses_texture_is_not_kept(astronaut_small, toys, monkeypatch):
    import cv2

    # the stronger denoiser blurs the photo flat: PIQE says it lost texture against the weaker one
    dark, (out, report) = _escalation_case(astronaut_small, monkeypatch, lambda clean, noisy: cv2.blur(noisy, (7, 7)))
    brighten, weak, strong = report["steps"]
    assert strong["tool"] == "qc1_smooth" and not strong["kept"]
    assert any(v.get("rule") == "stronger denoiser lost texture" and v["rejected"] for v in strong["quality"])
    assert weak["kept"] and not any(v["rejected"] for v in weak["quality"])  # the weaker one stays
    assert [s["tool"] for s in report["plan"]["steps"]] == ["qc1_gain", "qc1_keep"]


def test_follow_up_denoiser_is_not_judged_by_the_faint_noise_rule(astronaut_small, toys, monkeypatch):
    from restoreagent import quality

    monkeypatch.setattr(quality, "denoiser_for", lambda sigma: "qc1_smooth")
    monkeypatch.setattr(quality, "denoisers_by_strength", lambda: ["qc1_smooth"])
    rng = np.random.default_rng(0)
    dark = np.clip(_smooth_photo(astronaut_small) * 0.2 + rng.normal(0, 0.6 / 255, astronaut_small.shape), 0, 1)
    dark = dark.astype(np.float32)  # dark, with faint noise that brightening reveals
    assert noise_level(dark) < quality.FAINT_NOISE
    out, report = restore_auto(dark, planner=OneAnswer("saw: low_light | plan: brighten:qc1_gain"))
    brighten, follow = report["steps"]
    assert follow["added_by"] and follow["kept"]
    assert not any(v.get("rule") == "faint noise" for v in follow["quality"])


def test_faint_noise_rule_reads_the_photo_not_the_step_input(astronaut_small, toys):
    from toytools import add_noise

    from restoreagent.quality import FAINT_NOISE

    # deJPEG (here: a smoothing step) lowers the measure before the denoiser runs; the photo was noisy
    noisy = add_noise(_smooth_photo(astronaut_small), 10 / 255)
    planner = OneAnswer("saw: noise, jpeg | plan: dejpeg:qc1_dejpeg, denoise:qc1_smooth")
    out, report = restore_auto(noisy, planner=planner)
    dejpeg, denoise = report["steps"]
    assert dejpeg["kept"] and noise_level(noisy) > FAINT_NOISE
    assert denoise["kept"] and not any(v.get("rule") for v in denoise.get("quality", []))


def test_faint_noise_rule_is_off_after_brightening(astronaut_small, toys):
    """A dark photo measures faint noise because it is dark; after brightening, the denoiser meets
    the noise the brightening revealed: the faint-noise rule does not judge it (one-shot and stepwise)."""
    from restoreagent.agent import stepwise_restore
    from restoreagent.quality import FAINT_NOISE

    rng = np.random.default_rng(0)
    dark = np.clip(_smooth_photo(astronaut_small) * 0.2 + rng.normal(0, 0.6 / 255, astronaut_small.shape), 0, 1)
    dark = dark.astype(np.float32)
    assert noise_level(dark) < FAINT_NOISE
    out, report = restore_auto(dark, planner=OneAnswer("saw: low_light, noise | plan: brighten:qc1_gain, denoise:qc1_smooth"))
    brighten, denoise = report["steps"]
    assert brighten["kept"] and denoise["kept"] and not any(v.get("rule") for v in denoise["quality"])

    class Stepwise:
        name = "scripted"

        def plan(self, request):
            done = {s.task for s in request.history.done} | {s.task for s in request.history.rolled_back}
            if request.history.last_step is not None:
                done.add(request.history.last_step.task)
            todo = [t for t in ("brighten:qc1_gain", "denoise:qc1_smooth") if t.split(":")[0] not in done]
            return parse_answer("saw: low_light | plan: " + ", ".join(todo))

    run = stepwise_restore(dark, Stepwise())
    assert [(s["task"], s["kept"]) for s in run.steps] == [("brighten", True), ("denoise", True)]


def _textured_photo(noise_sigma: float = 2.0):
    from skimage import data

    img = data.astronaut()[100:292, 150:342].astype(np.float32) / 255
    rng = np.random.default_rng(0)
    return np.clip(img + rng.normal(0, noise_sigma / 255, img.shape), 0, 1).astype(np.float32)


def test_final_denoising_that_flattens_texture_is_kept_in_part():
    """The whole step raises PIQE far past the photo's: a share of it is kept that PIQE accepts,
    and the noise stays within its margin of the photo's."""
    from skimage import filters

    from restoreagent.quality import (
        QUALITY_CHECKS,
        SOFTEN_SHARES,
        piqe,
        resolve_quality_checks,
        soften_denoising,
    )

    photo = _textured_photo()
    flat = filters.gaussian(photo, sigma=1, channel_axis=-1).astype(np.float32)
    assert piqe(flat) - piqe(photo) > QUALITY_CHECKS["piqe"].margin
    record = {}
    out = soften_denoising(resolve_quality_checks("noise,exposure"), photo, photo, record, flat)
    share = record["softened"]["kept_share"]
    assert share in SOFTEN_SHARES
    np.testing.assert_allclose(out, photo + share * (flat - photo), atol=1e-6)
    assert piqe(out) - piqe(photo) <= QUALITY_CHECKS["piqe"].margin
    assert noise_level(out) <= noise_level(photo) + QUALITY_CHECKS["noise"].margin
    # with the checks off, or a step PIQE accepts, the step's output is returned untouched
    assert soften_denoising((), photo, photo, {}, flat) is flat
    same = photo.copy()
    assert soften_denoising(resolve_quality_checks("noise,exposure"), photo, photo, {}, same) is same
    # a heavily noisy photo: the rule does not act (nor pay for PIQE)
    from restoreagent.quality import SOFTEN_BELOW_NOISE

    noisy = _textured_photo(12.0)
    assert noise_level(noisy) >= SOFTEN_BELOW_NOISE
    blurred = filters.gaussian(noisy, sigma=1, channel_axis=-1).astype(np.float32)
    assert soften_denoising(resolve_quality_checks("noise,exposure"), noisy, noisy, {}, blurred) is blurred


def test_run_auto_keeps_part_of_a_final_denoiser_that_loses_texture(toys):
    """End to end through the one-shot agent: the plan's last step is a smoothing denoiser on a
    lightly noisy textured photo (above the faint-noise rule's threshold, so no check rejects it);
    the result is a share of it and the step's record says so."""
    from restoreagent.quality import FAINT_NOISE, QUALITY_CHECKS, piqe

    photo = _textured_photo(3.0)
    assert noise_level(photo) > FAINT_NOISE
    out, report = restore_auto(photo, planner=OneAnswer("saw: noise | plan: denoise:qc1_smooth"))
    (step,) = report["steps"]
    assert step["kept"] and "softened" in step
    assert piqe(out) - piqe(photo) <= QUALITY_CHECKS["piqe"].margin
    assert noise_level(out) < noise_level(photo)
