"""Learned fusion: a convex combination of its candidates, any K, any order; the candidates of a plan;
the shipped weights; run --fuse; the train-fusion job's smoke config."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from restoreagent.cli import main
from restoreagent.fusion import (
    FusionNet,
    candidate_plans,
    fuse,
    fuse_plan,
    fusion_weights,
    load_fusion,
    run_plans,
    shipped_weights,
)
from restoreagent.fusion.candidates import strength
from restoreagent.fusion.weights import read_fusion_meta
from restoreagent.plan import Plan, parse_plan
from restoreagent.splits import DEV_SPLITS
from restoreagent.tools.registry import tools_for_task

ROOT = Path(__file__).resolve().parents[1]


def _random_net(seed=0) -> FusionNet:
    torch.manual_seed(seed)
    net = FusionNet((4, 8, 8)).eval()
    with torch.no_grad():  # large random weights: far-from-uniform blends, so the checks below bite
        for p in net.parameters():
            if not p.any():  # the head starts at zero (the untrained net is the average): give it weights too
                p.normal_(0, 0.3)
            p.mul_(4)
    return net


def _candidates(k=3, h=37, w=45, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((h, w, 3), dtype=np.float32) for _ in range(k)], rng.random((h, w, 3), dtype=np.float32)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_the_output_is_a_convex_combination_of_the_candidates(k):
    cands, degraded = _candidates(k)
    fused, weights = fuse(cands, degraded, _random_net())
    assert weights.shape == (k, 37, 45) and (weights >= 0).all()
    assert np.allclose(weights.sum(0), 1.0, atol=1e-5)
    assert np.allclose(fused, (weights[..., None] * np.stack(cands)).sum(0), atol=1e-5)
    stack = np.stack(cands)
    assert (fused >= stack.min(0) - 1e-5).all() and (fused <= stack.max(0) + 1e-5).all()
    if k > 1:  # a real per-pixel choice, not a fixed average
        assert weights.std() > 0.02


def test_candidate_order_does_not_matter_and_tiles_agree_with_the_whole():
    cands, degraded = _candidates(4, 64, 80)
    net = _random_net(1)
    w = fusion_weights(cands, degraded, net)
    perm = [2, 0, 3, 1]
    assert np.allclose(fusion_weights([cands[i] for i in perm], degraded, net), w[perm], atol=1e-4)
    tiled = fusion_weights(cands, degraded, net, tile=24)  # tiles seen with context: (nearly) the same weights
    assert np.allclose(tiled, w, atol=5e-3) and np.allclose(tiled.sum(0), 1.0, atol=1e-5)


def test_identical_candidates_give_that_candidate():
    cands, degraded = _candidates(1)
    fused, _ = fuse(cands * 3, degraded, _random_net())
    assert np.allclose(fused, cands[0], atol=1e-5)


def test_shapes_must_match():
    cands, degraded = _candidates(2)
    with pytest.raises(ValueError, match="one shape"):
        fusion_weights([cands[0], cands[1][:10]], degraded, _random_net())
    with pytest.raises(ValueError, match="at least one"):
        fusion_weights([], degraded, _random_net())


def test_candidate_plans_are_the_plan_its_reordering_and_its_strength_brackets(shipped_tools_only):
    plan = parse_plan("denoise:unet_denoise_mid, brighten:gamma_mild")
    plans = candidate_plans(plan, 5)
    assert [p.text() for p in plans] == [
        "denoise:unet_denoise_mid, brighten:gamma_mild",   # the plan
        "denoise:unet_denoise_high, brighten:gamma_mild",  # the step with most tools bracketed: stronger,
        "denoise:unet_denoise_low, brighten:gamma_mild",   # weaker
        "denoise:unet_denoise_mid, brighten:gamma_mid",    # then the next step's stronger (mild is the mildest)
        "brighten:gamma_mild, denoise:unet_denoise_mid",   # another order: a different kind of error
    ]
    assert candidate_plans(plan, 2) == plans[:2] and len(set(plans)) == 5
    jpeg = candidate_plans(parse_plan("dejpeg:unet_dejpeg_mild, denoise:unet_denoise_mid"), 5)
    assert [p.text() for p in jpeg[1:]] == ["dejpeg:unet_dejpeg_mild, denoise:unet_denoise_high",
                                            "dejpeg:unet_dejpeg_mild, denoise:unet_denoise_low",
                                            "dejpeg:unet_dejpeg_severe, denoise:unet_denoise_mid",
                                            "denoise:unet_denoise_mid, dejpeg:unet_dejpeg_mild"]
    assert strength("unet_denoise_low") < strength("gamma_mid") < strength("unet_dejpeg_severe")
    assert strength("curve_brighten") is None
    # every one-step substitution comes, once, then the two-step brackets
    neighbours = sum(len(tools_for_task(t)) - 1 for t in plan.tasks)  # (other tests may register toy tools)
    everything = candidate_plans(plan, 50)
    assert [p.text() for p in everything[2 + neighbours:]] == ["denoise:unet_denoise_high, brighten:gamma_mid",
                                                                "denoise:unet_denoise_low, brighten:gamma_mid"]
    assert [p.text() for p in candidate_plans(parse_plan("dejpeg:unet_dejpeg_mild, denoise:unet_denoise_mid"), 9)[5:]] == [
        "dejpeg:unet_dejpeg_severe, denoise:unet_denoise_high", "dejpeg:unet_dejpeg_severe, denoise:unet_denoise_low"]
    one = parse_plan("denoise:unet_denoise_mid")
    assert [p.text() for p in candidate_plans(one, 3)] == ["denoise:unet_denoise_mid", "denoise:unet_denoise_high",
                                                          "denoise:unet_denoise_low"]
    assert candidate_plans(Plan(), 3) == [Plan()]


def test_the_untrained_net_returns_the_marked_candidate_and_context_makes_tiles_agree():
    cands, degraded = _candidates(4, 64, 80)
    net = FusionNet((4, 8, 8)).eval()
    w = fusion_weights(cands, degraded, net, prefer=2)
    assert (w[2] > 0.85).all() and np.allclose(w[[0, 1, 3]], w[0], atol=1e-6)  # the rest share what is left
    assert np.allclose(fusion_weights(cands, degraded, net), 0.25, atol=1e-6)  # nothing marked: the average
    # the image-level context is pooled over the whole image, once, and handed to every tile
    net = _random_net(2)
    cand = torch.from_numpy(np.stack(cands)).permute(0, 3, 1, 2)[None]
    deg = torch.from_numpy(degraded).permute(2, 0, 1)[None]
    with torch.no_grad():
        whole = net.context(cand, deg)
        half = net.context(cand[..., :40], deg[..., :40])
        parts = net.context_from_moments([net.context_moments(cand[..., :40], deg[..., :40]),
                                          net.context_moments(cand[..., 40:], deg[..., 40:])])
    assert not torch.allclose(whole, half, atol=1e-4)  # it does depend on what it sees
    assert torch.allclose(parts, net.context_from_moments([net.context_moments(cand[..., :40], deg[..., :40]),
                                                           net.context_moments(cand[..., 40:], deg[..., 40:])]))
    tiled = fusion_weights(cands, degraded, net, tile=24, prefer=0)
    assert np.allclose(tiled, fusion_weights(cands, degraded, net, prefer=0), atol=5e-3)


def test_run_plans_shares_prefixes(astronaut_small):
    plans = candidate_plans(parse_plan("dejpeg:unet_dejpeg_mild, denoise:unet_denoise_mid"), 4)
    steps = []
    outs = run_plans(astronaut_small, plans, on_step=steps.append)
    assert len(outs) == 4 and len(steps) < sum(len(p) for p in plans)
    assert len(steps) == len({s for p in plans for s in [p.steps[:1], p.steps]})


def test_shipped_weights_load_were_not_trained_on_the_dev_split_and_blend_a_real_plan(astronaut_small):
    from restoreagent.fusion import weights_for_tasks

    special = weights_for_tasks(["denoise", "dejpeg"])
    assert special != shipped_weights() and read_fusion_meta(special)["tasks"] == ["dejpeg", "denoise"]
    for path in (shipped_weights(), special):
        meta = read_fusion_meta(path)
        assert meta["parameters"] < 1_000_000 and meta["trained_on"]
        assert not any(Path(f).name in DEV_SPLITS for f in meta["trained_on"])
        assert path.stat().st_size < 1_000_000
        load_fusion(path)
    assert "tasks" not in read_fusion_meta(shipped_weights())
    noisy = np.clip(astronaut_small + np.random.default_rng(0).normal(0, 0.1, astronaut_small.shape), 0, 1)
    fused, report = fuse_plan(noisy.astype(np.float32), parse_plan("denoise:unet_denoise_mid"), 3, load_fusion())
    assert report["fused"] and len(report["candidates"]) == 3
    assert abs(sum(c["mean_weight"] for c in report["candidates"]) - 1) < 1e-3
    mse = lambda x: float(np.mean((x - astronaut_small) ** 2))  # noqa: E731
    assert mse(fused) < mse(noisy) / 3


def test_run_fuse_writes_the_blend_and_reports_its_candidates(tmp_path, astronaut_png, capsys):
    out = tmp_path / "fused.png"
    assert main(["run", str(astronaut_png), "-o", str(out), "--plan", "denoise:unet_denoise_mid", "--fuse", "3",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.is_file() and report["fused"] and [c["plan"] for c in report["candidates"]][0] == "denoise:unet_denoise_mid"
    # a region and a blend at once
    out2 = tmp_path / "fused_box.png"
    assert main(["run", str(astronaut_png), "-o", str(out2), "--plan", "denoise:unet_denoise_mid", "--fuse", "2",
                 "--box", "10,10,40,40"]) == 0 and out2.is_file()


def test_train_fusion_smoke_config_runs_end_to_end(tmp_path, monkeypatch):
    from restoreagent.fusion.weights import load_fusion as load
    from restoreagent.jobs import run_job

    for link in ("examples", "configs"):
        (tmp_path / link).symlink_to(ROOT / link)
    monkeypatch.chdir(tmp_path)
    summary = run_job("train-fusion", {}, files=["configs/smoke/train-fusion.yaml"])
    weights = Path(summary["weights"])
    assert weights.is_file() and summary["steps"] == 3 and np.isfinite(summary["val"]["psnr_fused"])
    assert len(list((tmp_path / "runs/smoke/fusion/candidates").rglob("*.npz"))) == 2 * 2 + 2
    load(weights)
    # resumable: a second run with resume finds its checkpoint and trains no further
    again = run_job("train-fusion", {"resume": True}, files=["configs/smoke/train-fusion.yaml"])
    assert again["steps"] == 3 and again["history"][-1]["step"] == 3
    # fine-tuning starts from given weights: with no step to take, the export is those weights
    from safetensors.torch import load_file

    tuned = run_job("train-fusion", {"init": str(weights), "output_dir": "runs/smoke/fusion_ft", "export": None,
                                     "train": {"max_steps": 0}}, files=["configs/smoke/train-fusion.yaml"])
    before, after = load_file(str(weights)), load_file(tuned["weights"])
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert "tasks" not in read_fusion_meta(weights)  # two combinations: a general network
    # one combination: a specialist, its task set in its metadata
    special = run_job("train-fusion", {"init": str(weights), "output_dir": "runs/smoke/fusion_sp", "export": None,
                                       "data": {"combos": ["noise,jpeg"]}}, files=["configs/smoke/train-fusion.yaml"])
    assert read_fusion_meta(special["weights"])["tasks"] == ["dejpeg", "denoise"]


def test_run_fuse_picks_the_specialist_of_the_plans_task_set(tmp_path, monkeypatch, astronaut_small):
    import restoreagent.fusion.weights as fw
    from restoreagent.fusion.weights import save_fusion_weights, specialist_name

    general = save_fusion_weights(FusionNet((4, 8, 8)), tmp_path / "fusion.safetensors", {})
    special = save_fusion_weights(_random_net(), tmp_path / specialist_name(["denoise", "dejpeg"]), {"tasks": ["dejpeg", "denoise"]})
    monkeypatch.setattr(fw, "shipped_weights", lambda: general)
    assert fw.weights_for_tasks(["denoise", "dejpeg"]) == special == fw.weights_for_tasks(["dejpeg", "denoise"])
    assert fw.weights_for_tasks(["denoise"]) == general and fw.weights_for_tasks(["brighten", "denoise"]) == general
    image = astronaut_small[:48, :48].astype(np.float32)
    _, report = fuse_plan(image, parse_plan("dejpeg:unet_dejpeg_mild, denoise:unet_denoise_mid"), 3)
    assert report["weights"] == special.name
    _, report = fuse_plan(image, parse_plan("denoise:unet_denoise_mid"), 3)
    assert report["weights"] == "fusion.safetensors"
    # the untrained general network is the plain average; the specialist's random weights are not
    assert abs(report["candidates"][0]["mean_weight"] - 1 / 3) < 1e-3
