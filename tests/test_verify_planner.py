"""The verifying planner: likely sets from the detector's margins, prefix-shared execution, a verifier
that compares candidates (permutation-equivariant), the data and training jobs end to end, and the
planner on a photo."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from restoreagent.errors import RestoreAgentError
from restoreagent.executor import run_plans
from restoreagent.imageio import load_image
from restoreagent.plan import parse_plan
from restoreagent.planners.verify.candidates import likely_sets, margins
from restoreagent.planners.verify.features import CONSISTENCY_NAMES, consistency_stats
from restoreagent.planners.verify.model import VerifierConfig, VerifierNet
from restoreagent.planners.verify.planner import view_of

ROOT = Path(__file__).resolve().parents[1]


def fake_detector(labels=("haze", "low_light", "noise", "jpeg")):
    n = len(labels)
    return SimpleNamespace(labels=list(labels), a=np.ones(n), b=np.zeros(n), thresholds=np.full(n, 0.5))


def test_likely_sets_start_with_the_decision_then_flip_the_least_certain_labels():
    det = fake_detector()
    logits = np.array([-6.0, -0.3, 4.0, 0.5])  # haze surely absent, low light nearly present, noise present, jpeg barely
    assert np.allclose(margins(det, logits), logits)
    sets = likely_sets(det, logits, n_sets=4)
    assert [s.degradations for s in sets] == [("noise", "jpeg"), ("low_light", "noise", "jpeg"), ("noise",),
                                              ("low_light", "noise")]
    assert [s.rank for s in sets] == [0, 1, 2, 3] and sets[0].margin == 0 and sets[1].margin == pytest.approx(-0.3)
    assert all(a.margin >= b.margin for a, b in zip(sets, sets[1:]))


def test_likely_sets_never_offer_doing_nothing_against_a_detection():
    det = fake_detector()
    sets = likely_sets(det, np.array([-6.0, 0.2, -5.0, -4.0]), n_sets=4)  # low light, barely
    assert () not in [s.degradations for s in sets] and sets[0].degradations == ("low_light",)
    clean = likely_sets(det, np.array([-6.0, -0.2, -5.0, -4.0]), n_sets=2)  # nothing decided: nothing first
    assert [s.degradations for s in clean] == [(), ("low_light",)]


def test_likely_sets_never_exceed_four_core_degradations():
    det = fake_detector(("haze", "rain", "low_light", "noise", "jpeg"))
    sets = likely_sets(det, np.array([3.0, 3.0, 3.0, 3.0, -0.1]), n_sets=5)
    assert all(len(s.degradations) <= 4 for s in sets) and sets[0].degradations == ("haze", "rain", "low_light", "noise")


def test_prefix_candidates_leave_out_last_steps_once_each_with_their_own_sets_margin():
    from restoreagent.planners.verify.candidates import Candidate, CandidateSet, with_prefixes

    det = fake_detector()  # labels haze, low_light, noise, jpeg; margins are the logits here
    logits = np.array([0.3, -2.0, 3.0, 1.0])  # decided: haze, noise, jpeg
    full = Candidate(parse_plan("denoise:unet_denoise_mid, dejpeg:unet_dejpeg_mild, dehaze:unet_dehaze"),
                     CandidateSet(("haze", "noise", "jpeg"), 0.0, 0), 0, 0.0)
    shorter = Candidate(parse_plan("denoise:unet_denoise_mid, dejpeg:unet_dejpeg_mild"), CandidateSet(("noise", "jpeg"), -0.3, 1), 0, 0.0)
    out = with_prefixes([full, shorter], det, logits)
    assert out[:2] == [full, shorter]  # the proposed plans first, unchanged
    (first,) = out[2:]  # "denoise, dejpeg" is proposed already: only "denoise" is new
    assert [s.text() for s in first.plan.steps] == ["denoise:unet_denoise_mid"] and first.dropped == 2
    assert first.set.degradations == ("noise",) and first.set.rank == 0 and first.scorer_rank == 0
    assert first.set.margin == pytest.approx(-1.3)  # it leaves out haze (0.3) and jpeg (1.0)
    assert with_prefixes([shorter], det, logits)[1].dropped == 1


def test_run_plans_runs_a_shared_prefix_once_and_matches_running_each_plan():
    calls = []

    def step(image, s):
        calls.append(s.text())
        return image * {"gamma_mild": 2.0, "gamma_strong": 3.0}.get(s.tool, 1.0) + {"unet_denoise_low": 1.0}.get(s.tool, 0.5)

    plans = [parse_plan(t) for t in ("denoise:unet_denoise_low, brighten:gamma_mild",
                                     "denoise:unet_denoise_low, brighten:gamma_strong",
                                     "brighten:gamma_mild, denoise:unet_denoise_low")]
    image = np.ones((2, 2, 3), np.float32)
    outs = run_plans(image, plans, step_runner=lambda im, s: (step(im, s), 0.0))
    assert calls.count("denoise:unet_denoise_low") == 2 and len(calls) == 5  # the first step of plans 1-2 once
    for p, o in zip(plans, outs):
        x = image
        for s in p.steps:
            x = step(x, s)
        assert np.array_equal(o, x)


def test_the_verifier_compares_candidates_and_ignores_padding():
    torch.manual_seed(0)
    net = VerifierNet(VerifierConfig(in_dim=5, hidden=8, members=2)).eval()
    x = torch.randn(1, 4, 5)
    mask = torch.tensor([[True, True, True, False]])
    s = net(x, mask)[0]
    perm = [2, 0, 1, 3]
    assert torch.allclose(net(x[:, perm], mask)[0], s[perm], atol=1e-6)  # a score follows its candidate
    assert torch.isinf(s[3]) and torch.isfinite(s[:3]).all()
    x2 = x.clone()
    x2[0, 3] = 100.0  # a padded row changes nothing
    assert torch.allclose(net(x2, mask)[0][:3], s[:3], atol=1e-6)
    x3 = x.clone()
    x3[0, 2] += 1.0  # but another candidate does: it is a comparison, not an absolute score
    assert not torch.allclose(net(x3, mask)[0][:2], s[:2])


def test_the_pixel_verifier_reads_pixels_compares_candidates_and_ignores_padding():
    torch.manual_seed(0)
    net = VerifierNet(VerifierConfig(in_dim=5, hidden=8, members=2, pixels=True, pixel_width=8, pixel_dim=4)).eval()
    x, outs, inp = torch.randn(1, 4, 5), torch.rand(1, 4, 3, 24, 24), torch.rand(1, 3, 24, 24)
    mask = torch.tensor([[True, True, True, False]])
    s = net(x, mask, outs, inp)[0]
    perm = [2, 0, 1, 3]
    assert torch.allclose(net(x[:, perm], mask, outs[:, perm], inp)[0], s[perm], atol=1e-5)
    outs2 = outs.clone()
    outs2[0, 3] = 1.0  # a padded candidate's pixels change nothing
    assert torch.allclose(net(x, mask, outs2, inp)[0][:3], s[:3], atol=1e-5)
    outs3 = outs.clone()
    outs3[0, 0, :, 8:16, 8:16] = 0.0  # a candidate's pixels matter
    assert not torch.allclose(net(x, mask, outs3, inp)[0][:3], s[:3])
    assert torch.isfinite(net(x, mask, torch.rand(1, 4, 3, 40, 56), torch.rand(1, 3, 40, 56))[0][:3]).all()  # any view size
    with pytest.raises(ValueError, match="reads pixels"):
        net(x, mask)


def test_consistency_checks_tell_removed_noise_from_removed_structure_and_see_block_edges():
    import cv2

    clean = load_image(ROOT / "examples" / "astronaut_noise_jpeg.png")[:128, :128]
    clean = cv2.GaussianBlur(clean, (0, 0), 1.0)  # the example's own noise out of the way
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    smeared = cv2.GaussianBlur(clean, (0, 0), 2.5)
    _, enc = cv2.imencode(".jpg", (clean * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 8])
    blocky = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255
    col = {n: i for i, n in enumerate(CONSISTENCY_NAMES)}
    denoised, oversmoothed = consistency_stats([clean, smeared], noisy)
    # what a good denoiser removes is white and off the edges; an over-smoothing one takes the edges
    assert abs(denoised[col["change_autocorr_h"]]) < 0.15 < oversmoothed[col["change_autocorr_h"]]
    assert denoised[col["change_on_input_edges"]] < oversmoothed[col["change_on_input_edges"]]
    assert oversmoothed[col["log_sharpening"]] < denoised[col["log_sharpening"]]
    (unchanged,) = consistency_stats([clean], clean)
    assert unchanged[col["log_change"]] < -15  # nothing moved
    assert consistency_stats([blocky], clean)[0, col["blockiness"]] > unchanged[col["blockiness"]] + 0.1
    # a tone curve moves no edges: the coarse structure is kept up to it
    brighter, shifted = consistency_stats([clean ** 0.6, np.roll(clean, 6, axis=1)], clean)
    assert brighter[col["log_lowpass_change"]] < shifted[col["log_lowpass_change"]] - 1


def test_tone_augmentation_is_a_seeded_gamma_curve_and_off_at_zero():
    from restoreagent.planners.verify.data import tone_curve

    clean = np.random.default_rng(0).uniform(0, 1, (16, 16, 3)).astype(np.float32)
    same, g = tone_curve(clean, 0.0, 101, 5)
    assert same is clean and g == 1.0
    a, ga = tone_curve(clean, 0.4, 101, 5)
    b, gb = tone_curve(clean, 0.4, 101, 5)
    assert ga == gb and np.array_equal(a, b)  # a resumed build makes the same sample
    np.testing.assert_allclose(a, clean ** ga, rtol=1e-5)
    gs = [tone_curve(clean, 0.4, 101, i)[1] for i in range(200)]
    assert min(gs) >= np.exp(-0.4) and max(gs) <= np.exp(0.4) and min(gs) < 0.8 < 1.25 < max(gs)


def test_view_is_the_photo_up_to_256_px_else_a_mosaic_of_its_corners():
    small = np.zeros((100, 200, 3), np.float32)
    assert view_of(small) is small
    big = np.random.default_rng(0).random((600, 400, 3)).astype(np.float32)
    v = view_of(big)
    assert v.shape == (256, 256, 3)
    assert np.array_equal(v[:128, :128], big[:128, :128]) and np.array_equal(v[128:, 128:], big[472:, 272:])
    assert np.array_equal(v[:128, 128:], big[:128, 272:]) and np.array_equal(v[128:, :128], big[472:, :128])
    thin = np.random.default_rng(1).random((60, 900, 3)).astype(np.float32)  # narrower than a tile: padded
    assert view_of(thin).shape == (256, 256, 3)


@pytest.mark.timeout(300)
def test_verify_jobs_smoke_configs_then_the_planner_plans_with_the_trained_file(tmp_path, monkeypatch):
    from restoreagent.jobs import run_job
    from restoreagent.planners import PlanRequest, get_planner
    from restoreagent.planners.verify.data import load_rows
    from restoreagent.planners.verify.train import consistency_of

    for link in ("examples", "configs"):
        (tmp_path / link).symlink_to(ROOT / link)
    monkeypatch.chdir(tmp_path)
    out = run_job("verify-data", {}, files=["configs/smoke/verify-data.yaml"])
    rows = load_rows(out)
    assert [r["sample_id"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        k = len(str(r["plans"]).split("|"))
        assert r["metrics"].shape == (k, 2) and r["out_raw"].shape == (k, 19) and r["stats"].shape == (k + 1, 8)
        assert r["table"][0, 0] == 0 and r["table"][0, 2] == 0  # candidate 0: the scorer's best for the decided set
        assert r["cons"].shape == (k, len(CONSISTENCY_NAMES)) and np.isfinite(r["cons"]).all()
        assert "dropped" not in r  # no prefixes unless asked
    again = run_job("verify-data", {}, files=["configs/smoke/verify-data.yaml"])  # finished: nothing redone
    assert [r["sample_id"] for r in load_rows(again)] == [0, 1, 2, 3]
    with pytest.raises(RestoreAgentError, match="other settings"):
        run_job("verify-data", {"per_set": 3}, files=["configs/smoke/verify-data.yaml"])

    summary = run_job("train-verifier", {}, files=["configs/smoke/train-verifier.yaml"])
    assert summary["samples"] == 4 and summary["train"]["n"] + (summary["val"] or {"n": 0})["n"] == 4
    with pytest.raises(RestoreAgentError, match="needs more"):
        run_job("train-verifier", {"per_set": 5}, files=["configs/smoke/train-verifier.yaml"])

    listwise = run_job("train-verifier", {"loss": "listwise", "consistency": False, "export": None, "output_dir": "runs/smoke/lw"},
                       files=["configs/smoke/train-verifier.yaml"])
    assert listwise["config"]["loss"] == "listwise" and listwise["samples"] == 4
    with pytest.raises(RestoreAgentError, match="loss=pairwise: use regret or listwise"):
        run_job("train-verifier", {"loss": "pairwise"}, files=["configs/smoke/train-verifier.yaml"])
    rich = run_job("train-verifier", {"embedding": True, "no_reference": True, "export": "runs/smoke/verify/rich.safetensors"},
                   files=["configs/smoke/train-verifier.yaml"])
    assert rich["samples"] == 4
    with pytest.raises(RestoreAgentError, match="pixels=true needs data"):
        run_job("train-verifier", {"pixels": True}, files=["configs/smoke/train-verifier.yaml"])

    px_data = run_job("verify-data", {"out": "runs/smoke/verify/data_px", "pixels": True}, files=["configs/smoke/verify-data.yaml"])
    for r, plain in zip(load_rows(px_data), rows):
        k = len(str(r["plans"]).split("|"))
        assert r["in_px"].shape == (64, 64, 3) and r["out_px"].shape == (k, 64, 64, 3) and r["out_px"].dtype == np.uint8
        assert np.array_equal(r["metrics"], plain["metrics"])  # the same samples and candidates, pixels kept too
        # data made before the checks were kept gets them from its pixels: the same numbers
        np.testing.assert_allclose(consistency_of({"in_px": r["in_px"], "out_px": r["out_px"]}), r["cons"], atol=1e-5)
    px = run_job("train-verifier", {"data": ["runs/smoke/verify/data_px"], "pixels": True, "pixel_width": 8, "pixel_dim": 4,
                                    "crop": 32, "batch": 2, "export": "runs/smoke/verify/pixels.safetensors"},
                 files=["configs/smoke/train-verifier.yaml"])
    assert px["samples"] == 4

    with pytest.raises(RestoreAgentError, match="prefixes=true needs data"):
        run_job("train-verifier", {"prefixes": True}, files=["configs/smoke/train-verifier.yaml"])
    pfx_data = run_job("verify-data", {"out": "runs/smoke/verify/data_pfx", "prefixes": True}, files=["configs/smoke/verify-data.yaml"])
    for r, plain in zip(load_rows(pfx_data), rows):
        plans, n = str(r["plans"]).split("|"), len(str(plain["plans"]).split("|"))
        assert plans[:n] == str(plain["plans"]).split("|") and not r["dropped"][:n].any()  # the proposals, then
        for plan, dropped in zip(plans[n:], r["dropped"][n:]):  # prefixes of them, each leaving out its last steps
            assert dropped >= 1 and any(q.startswith(plan + ",") and q.count(",") == plan.count(",") + dropped for q in plans[:n])
    pfx = run_job("train-verifier", {"data": ["runs/smoke/verify/data_pfx"], "prefixes": True,
                                     "export": "runs/smoke/verify/prefixes.safetensors"}, files=["configs/smoke/train-verifier.yaml"])
    assert pfx["samples"] == 4

    tone = load_rows(run_job("verify-data", {"out": "runs/smoke/verify/data_tone", "tone": 0.4},
                             files=["configs/smoke/verify-data.yaml"]))
    gammas = np.array([r["tone_gamma"] for r in tone])
    assert ((gammas >= np.exp(-0.4) - 1e-6) & (gammas <= np.exp(0.4) + 1e-6)).all() and np.ptp(gammas) > 0
    assert all(float(r["tone_gamma"]) == 1.0 for r in rows)  # off by default
    assert any(not np.array_equal(r["metrics"], plain["metrics"]) for r, plain in zip(tone, rows))  # other clean crops
    with pytest.raises(RestoreAgentError, match="tone=2.0"):
        run_job("verify-data", {"out": "runs/smoke/verify/data_tone2", "tone": 2.0}, files=["configs/smoke/verify-data.yaml"])

    image = load_image(ROOT / "examples" / "astronaut_noise_jpeg.png")
    for file in ("verifier", "rich", "pixels", "prefixes"):
        planner = get_planner("verify", model=f"runs/smoke/verify/{file}.safetensors")
        ranked = planner.ranked(image)
        plans = [tuple(a.plan.steps) for a, _ in ranked]
        proposed = [p for p in plans if not any(len(q) > len(p) and q[: len(p)] == p for q in plans)]
        assert 1 <= len(proposed) <= 4 and len(set(plans)) == len(plans)  # the proposals and their prefixes, once each
        assert all(np.isfinite(s) for _, s in ranked)
        assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
        answer = planner.plan(PlanRequest(image=image))
        assert answer.plan == ranked[0][0].plan and len(answer.plan) >= 1


def test_a_missing_verifier_file_is_a_clear_error(tmp_path):
    from restoreagent.planners.verify.weights import load_verifier

    with pytest.raises(RestoreAgentError, match="no verifier weights"):
        load_verifier(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a weight file")
    with pytest.raises(RestoreAgentError, match="not a verifier weight file"):
        load_verifier(bad)


def test_the_agent_plans_with_the_shipped_verifier_and_offers_its_next_best():
    from restoreagent import Agent
    from restoreagent.planners.verify.weights import load_verifier

    model, meta = load_verifier()  # the shipped file
    assert meta["n_sets"] >= 1 and meta["per_set"] >= 1 and meta["info"]["val"]["n"] > 0
    agent = Agent(planner="verify", device="cpu")
    image = load_image(ROOT / "examples" / "astronaut_noise_jpeg.png")
    answer = agent.plan(image)
    assert {s.task for s in answer.plan.steps} >= {"denoise"}  # the photo is noisy (and JPEG-compressed)
    answers = agent.plans(image, k=3)
    assert answers[0].plan == answer.plan and len({a.plan for a in answers}) == len(answers) >= 2
    result = agent.restore(image)  # the planner decides
    assert result.image.shape == image.shape and np.isfinite(result.image).all()
