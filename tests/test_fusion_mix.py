"""The fusion's whole-photo mix head: roles, convex combination with the U-Net's logits, any K in any
order, exact mix error, training that learns, files, run --fuse using it, and the job's smoke config."""

from pathlib import Path

import numpy as np
import pytest
import torch

from restoreagent.errors import RestoreAgentError
from restoreagent.fusion import candidate_plans, fuse_plan, run_plans
from restoreagent.fusion.mix import (
    MixHead,
    SetStats,
    _batch,
    combine,
    exact_targets,
    load_mix_head,
    mix_mse,
    roles,
    save_mix_head,
    set_stats,
    train_mix_head,
)
from restoreagent.plan import parse_plan

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("denoise", "brighten")


def test_roles_say_each_tools_strength_and_a_reordering():
    plans = [parse_plan(t) for t in ("denoise:unet_denoise_mid, brighten:gamma_mild",
                                     "denoise:unet_denoise_high, brighten:gamma_strong",
                                     "brighten:gamma_mild, denoise:unet_denoise_low")]
    r = roles(plans, TASKS)
    assert r.shape == (3, 9)
    assert r[0].tolist() == [0, 1, 0, 0, 1, 0, 0, 0, 0]
    assert r[1].tolist() == [0, 0, 1, 0, 0, 0, 1, 0, 0]
    assert r[2].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1]  # reordered


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.0])
def test_combine_is_convex_and_the_head_sets_each_candidates_share(scale):
    rng = np.random.default_rng(0)
    pixel = rng.dirichlet(np.ones(3), size=(20, 30)).transpose(2, 0, 1).astype(np.float32)
    w = combine(np.array([2.0, 0.0, -1.0]), pixel, scale)
    assert w.shape == (3, 20, 30) and (w >= 0).all() and np.allclose(w.sum(0), 1, atol=1e-5)
    if scale == 0:  # the head alone: one weight per candidate, the softmax of its logits
        soft = np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum()
        assert np.allclose(w, soft[:, None, None], atol=1e-6)
    else:  # the U-Net moves weight between places
        assert w[0].std() > 1e-3


def test_mix_error_from_the_gram_matrix_is_exact():
    rng = np.random.default_rng(1)
    cands, clean = rng.random((4, 16, 16, 3)), rng.random((16, 16, 3))
    a, b, c = exact_targets(cands, clean)
    w = rng.dirichlet(np.ones(4))
    direct = np.mean((np.einsum("k,khwc->hwc", w, cands) - clean) ** 2)
    via = mix_mse(torch.tensor(w[None]), torch.tensor(a[None]), torch.tensor(b[None]), torch.tensor([c], dtype=torch.float64))
    assert abs(float(via[0]) - direct) < 1e-12


def _random_stats(k, seed=0, n_roles=9):
    rng = np.random.default_rng(seed)
    pair = rng.normal(size=(k, k)).astype(np.float32)
    pair = (pair + pair.T) / 2
    return SetStats(rng.integers(0, 2, (k, n_roles)).astype(np.float32), pair, rng.normal(size=k).astype(np.float32),
                    rng.random((k, 10)).astype(np.float32), rng.random(10).astype(np.float32), np.zeros(0, np.float32))


def test_the_head_takes_any_k_in_any_order_and_masks_what_is_absent():
    torch.manual_seed(0)
    head = MixHead(9, members=2, hidden=8)
    s = _random_stats(5)
    perm = np.array([3, 0, 4, 1, 2])
    t = SetStats(s.roles[perm], s.pair[perm][:, perm], s.to_input[perm], s.bright[perm], s.bright_input, s.detector)
    assert np.allclose(head.set_logits(s)[perm], head.set_logits(t), atol=1e-5)
    batch = _batch([s, _random_stats(3, 1)])  # padded to 5: the short set's missing candidates get -inf
    logits = head(*batch)
    assert torch.isinf(logits[1, 3:]).all() and torch.isfinite(logits[1, :3]).all()


def test_training_learns_which_candidate_is_right():
    """Sets of 3 candidates; the clean photo is the candidate whose brightness matches the input's
    brightness pattern: a uniform mix is worse than what the trained head picks."""
    rng = np.random.default_rng(0)
    plans = [parse_plan(t) for t in ("denoise:unet_denoise_mid, brighten:gamma_mild",
                                     "denoise:unet_denoise_mid, brighten:gamma_mid",
                                     "denoise:unet_denoise_mid, brighten:gamma_strong")]
    stats, targets, cases = [], [], []
    for _ in range(120):
        base = rng.random((12, 12, 3)).astype(np.float32) * 0.5
        levels = [0.1, 0.25, 0.4]
        cands = np.stack([np.clip(base + lv, 0, 1) for lv in levels])
        right = int(rng.integers(3))
        degraded = np.clip(base * 0.3 + 0.1 * right, 0, 1).astype(np.float32)  # the input says which is right
        stats.append(set_stats(list(cands), degraded, plans, TASKS))
        targets.append(exact_targets(cands, cands[right]))
        cases.append((cands, right))
    head = train_mix_head(stats[:100], targets[:100], members=1, hidden=16, steps=1500, lr=3e-3, seed=0)
    learned = uniform = 0.0
    for s, (cands, right) in zip(stats[100:], cases[100:], strict=True):
        w = torch.softmax(torch.tensor(head.set_logits(s)), 0).numpy()
        learned += np.mean((np.einsum("k,khwc->hwc", w, cands) - cands[right]) ** 2)
        uniform += np.mean((cands.mean(0) - cands[right]) ** 2)
    assert learned < uniform / 4


def test_head_files_round_trip_and_bad_files_fail_clearly(tmp_path):
    torch.manual_seed(0)
    head = MixHead(9, members=2, hidden=8)
    head.pixel_scale.fill_(0.5)
    path = save_mix_head(head, tmp_path / "mix_brighten+denoise.safetensors", {"tasks": list(TASKS)})
    again, tasks = load_mix_head(path)
    s = _random_stats(4)
    assert tasks == TASKS and float(again.pixel_scale) == 0.5
    assert np.allclose(again.set_logits(s), head.set_logits(s), atol=1e-6)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a file")
    with pytest.raises(RestoreAgentError, match="junk.safetensors"):
        load_mix_head(junk)


def test_run_fuse_uses_the_mix_head_of_the_plans_task_set(tmp_path, monkeypatch, astronaut_small):
    import importlib

    ff = importlib.import_module("restoreagent.fusion.fuse")  # the module, not the function the package exports

    torch.manual_seed(0)
    head = MixHead(9, members=1, hidden=8)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 2.0)  # far from uniform
        head.pixel_scale.fill_(1.0)  # the network's per-pixel logits added: weights vary over the photo
    path = save_mix_head(head, tmp_path / "mix_brighten+denoise.safetensors", {"tasks": list(TASKS)})
    monkeypatch.setattr(ff, "mix_for_tasks", lambda tasks: path if set(tasks) == set(TASKS) else None)
    image = (astronaut_small[:48, :48] * 0.3).astype(np.float32)
    plan = parse_plan("denoise:unet_denoise_mid, brighten:gamma_mild")
    fused, report = fuse_plan(image, plan, 4)
    assert report["mix"] == path.name and report["weights"]
    outs = np.stack(run_plans(image, candidate_plans(plan, 4)))  # a convex combination: between them, pixel by pixel
    assert (fused >= outs.min(0) - 1e-4).all() and (fused <= outs.max(0) + 1e-4).all()
    shares = np.array([c["mean_weight"] for c in report["candidates"]])
    assert abs(shares.sum() - 1) < 1e-3 and shares.max() - shares.min() > 0.05
    _, plain = fuse_plan(image, plan, 4, mix=False)
    assert "mix" not in plain
    _, other = fuse_plan(image, parse_plan("denoise:unet_denoise_mid"), 3)
    assert "mix" not in other
    # a head that never saw some candidate's tool is not used for it: the network alone
    narrow = save_mix_head(head, tmp_path / "narrow" / "mix_brighten+denoise.safetensors",
                           {"tasks": list(TASKS), "tools": ["unet_denoise_mid", "gamma_mild"]})
    monkeypatch.setattr(ff, "mix_for_tasks", lambda tasks: narrow)
    _, skipped = fuse_plan(image, plan, 4)
    assert "mix" not in skipped and "unet_denoise_high" in skipped["mix_skipped"] and skipped["weights"]


def test_train_fusion_mix_smoke_config_runs_end_to_end(tmp_path, monkeypatch):
    from restoreagent.jobs import run_job

    for link in ("examples", "configs"):
        (tmp_path / link).symlink_to(ROOT / link)
    monkeypatch.chdir(tmp_path)
    summary = run_job("train-fusion-mix", {}, files=["configs/smoke/train-fusion-mix.yaml"])
    head, tasks = load_mix_head(summary["weights"])
    assert set(tasks) == {"dejpeg", "denoise"} and summary["sets"] == 4 and summary["val"]["sets"] == 2
    assert {"unet_dejpeg_mild", "unet_denoise_mid"} <= head.tools and head.unknown_tools([parse_plan("denoise:dct_mid")]) == ["dct_mid"]
    assert float(head.pixel_scale) in (0.0, 0.5, 1.0)
    with pytest.raises(RestoreAgentError, match="one task set"):
        run_job("train-fusion-mix", {"data": {"combos": ["noise,jpeg", "low_light,noise"]}},
                files=["configs/smoke/train-fusion-mix.yaml"])


def test_fuse_without_k_blends_up_to_8_candidates():
    from restoreagent.cli import build_parser

    args = build_parser().parse_args(["run", "in.png", "-o", "out.png", "--auto", "--fuse"])
    assert args.fuse == 8
    assert build_parser().parse_args(["run", "in.png", "-o", "out.png", "--auto", "--fuse", "3"]).fuse == 3
    assert build_parser().parse_args(["run", "in.png", "-o", "out.png", "--auto"]).fuse is None
