"""The plan scorer: plan encoding, the listwise training signal, the planner and its job end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from restoreagent.plan import Plan, parse_plan
from restoreagent.planners.ranker.features import PlanEncoder, all_pipelines
from restoreagent.search import count_pipelines, default_toolset

ROOT = Path(__file__).resolve().parents[1]


def test_all_pipelines_are_the_exhaustive_candidates():
    toolset = {"denoise": ["unet_denoise_low", "unet_denoise_mid", "unet_denoise_high"],
               "dejpeg": ["unet_dejpeg_mild", "unet_dejpeg_severe"], "brighten": ["gamma_mild", "gamma_mid", "gamma_strong"]}
    plans = all_pipelines(toolset)
    assert len(plans) == count_pipelines(toolset) == math.factorial(3) * 3 * 2 * 3
    assert len({p.text() for p in plans}) == len(plans)


def test_plan_encoding_tells_orders_and_tools_apart():
    enc = PlanEncoder.from_toolset(default_toolset(["denoise", "dejpeg"]))
    a = parse_plan("dejpeg:unet_dejpeg_mild, denoise:unet_denoise_mid", check_tools=False)
    b = parse_plan("denoise:unet_denoise_mid, dejpeg:unet_dejpeg_mild", check_tools=False)
    c = parse_plan("dejpeg:unet_dejpeg_mild, denoise:unet_denoise_low", check_tools=False)
    x = enc.encode([a, b, c])
    assert x.shape == (3, enc.dim)
    assert not np.array_equal(x[0], x[1]) and not np.array_equal(x[0], x[2])
    assert enc.knows(a) and not enc.knows(parse_plan("dehaze:unet_dehaze", check_tools=False))


def test_listwise_training_learns_an_image_dependent_order():
    """Synthetic labels: order A->B wins on images whose feature 0 is positive, B->A otherwise.
    A scorer that ignored the image could not get both right; this one must (>= 90%)."""
    import torch

    from restoreagent.planners.ranker.model import PlanScorerNet, ScorerConfig
    from restoreagent.planners.ranker.train import listwise_loss

    enc = PlanEncoder.from_toolset(default_toolset(["denoise", "dejpeg"]))
    ab = parse_plan("denoise:unet_denoise_mid, dejpeg:unet_dejpeg_mild", check_tools=False)
    ba = parse_plan("dejpeg:unet_dejpeg_mild, denoise:unet_denoise_mid", check_tools=False)
    plans = torch.from_numpy(enc.encode([ab, ba]))
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.normal(size=(256, 8)).astype(np.float32))
    sign = (img[:, 0] > 0).float()
    target = torch.stack([sign, 1 - sign], 1) * 2 - 1  # +1 for the winner, -1 for the loser
    mask = torch.ones_like(target, dtype=torch.bool)
    torch.manual_seed(0)
    model = PlanScorerNet(ScorerConfig(image_dim=8, plan_dim=enc.dim, hidden=16))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        pred = model(img.repeat_interleave(2, 0), plans.repeat(256, 1)).view(256, 2)
        loss = listwise_loss(pred, target, mask, tau=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = model(img.repeat_interleave(2, 0), plans.repeat(256, 1)).view(256, 2)
    accuracy = float(((pred[:, 0] > pred[:, 1]).float() == sign).float().mean())
    assert accuracy >= 0.9


def test_smoke_job_trains_exports_and_plans(tmp_path, monkeypatch):
    """label-compact (smoke) -> train-ranker (smoke) -> a scorer folder the ranker planner loads and plans with."""
    from restoreagent.jobs import run_job
    from restoreagent.planners import PlanRequest, get_planner

    for link in ("examples", "configs"):
        (tmp_path / link).symlink_to(ROOT / link)
    monkeypatch.chdir(tmp_path)
    run_job("label-compact", {}, files=["configs/smoke/label-compact.yaml"])
    summary = run_job("train-ranker", {}, files=["configs/smoke/train-ranker.yaml"])
    assert summary["train_samples"] >= 1 and np.isfinite(summary["history"][-1]["loss"])
    folder = tmp_path / "runs" / "smoke" / "ranker" / "model"
    meta = json.loads((folder / "ranker.json").read_text())
    assert "denoise:unet_denoise_mid" in meta["vocabulary"]
    # a second run reuses the feature table (nothing to rebuild) and gives the same table
    table = np.load(tmp_path / "runs/smoke/ranker/features.npz")
    run_job("train-ranker", {}, files=["configs/smoke/train-ranker.yaml"])
    assert np.array_equal(np.load(tmp_path / "runs/smoke/ranker/features.npz")["sample_id"], table["sample_id"])
    # worker processes build the same table
    from restoreagent.planners.ranker.train import build_table

    twin = build_table("runs/smoke/labels-compact", ["examples/photos"], tmp_path / "twin.npz", val_every=0,
                       progress=False, workers=2)
    for key in table.files:
        assert np.array_equal(twin[key], table[key]), key

    from restoreagent.imageio import load_image

    photo = load_image(ROOT / "examples" / "astronaut_noise_jpeg.png")[:128, :128]
    planner = get_planner("ranker+truth", model=str(folder))
    answer = planner.plan(PlanRequest(image=photo, degradations=("noise", "jpeg")))
    assert sorted(answer.plan.tasks) == ["dejpeg", "denoise"]
    ranked = planner.rerank(photo, [answer.plan, Plan.of([("denoise", "unet_denoise_low")])])
    assert ranked[0][0] == answer.plan  # the chosen plan is the scorer's best of all candidates


def test_shipped_scorer_plans_for_what_the_detector_saw():
    from restoreagent.imageio import load_image
    from restoreagent.planners import PlanRequest, get_planner
    from restoreagent.planners.ranker.weights import shipped_folder

    if not (shipped_folder() / "ranker.json").exists():
        pytest.skip("no shipped scorer")
    photo = load_image(ROOT / "examples" / "astronaut_noise_jpeg.png")
    answer = get_planner("ranker").plan(PlanRequest(image=photo))
    assert {"noise", "jpeg"} <= set(answer.degradations)
    assert {"denoise", "dejpeg"} <= set(answer.plan.tasks)


def test_shipped_planner_offers_k_distinct_plans_even_for_a_small_set():
    """A one-degradation set has as few pipelines as its task has tools (3 denoisers): the next
    alternatives come from the sets one change away from the detector's (what it may have missed)."""
    from skimage import data

    from restoreagent.degradations import degrade
    from restoreagent.planners import PlanRequest, get_planner

    clean = data.astronaut()[:256, :256].astype(np.float32) / 255
    noisy, _ = degrade(clean, chain="noise:sigma=25", seed=0)
    planner = get_planner("vlm")
    if planner.plan_scorer is None:
        pytest.skip("the shipped planner has no plan scorer")
    answers = planner.plan_candidates(PlanRequest(image=noisy), k=5)
    assert len(answers) == 5 and len({a.plan.text() for a in answers}) == 5
    assert answers[0].degradations == ("noise",) and answers[0] == planner.plan(PlanRequest(image=noisy))
    assert any(a.degradations != ("noise",) for a in answers[3:])
