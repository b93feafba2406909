"""The faster exhaustive search (level order, batched), the beam labeler and compact replayable records.

Toy tools (tests/toytools.py) keep most of these independent of the real toolbox; the batching
test runs two real learned tools on a tiny crop.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from restoreagent.errors import RestoreAgentError
from restoreagent.scoring import Scorer
from restoreagent.search import exhaustive_search, naive_search
from restoreagent.tools.registry import ToolSpec, register

TOY = {
    "denoise": ["ct_gain_up", "ct_smooth3"],
    "dejpeg": ["ct_gain_down", "ct_smooth5", "ct_offset"],
    "brighten": ["ct_offset_up", "ct_gain_up2"],
}
TOY_SPECS = [
    ("ct_gain_up", "denoise", "toytools:gain", {"g": 1.1}),
    ("ct_smooth3", "denoise", "toytools:smooth", {"k": 3}),
    ("ct_gain_down", "dejpeg", "toytools:gain", {"g": 0.9}),
    ("ct_smooth5", "dejpeg", "toytools:smooth", {"k": 5}),
    ("ct_offset", "dejpeg", "toytools:offset", {"b": 0.03}),
    ("ct_offset_up", "brighten", "toytools:offset", {"b": 0.08}),
    ("ct_gain_up2", "brighten", "toytools:gain", {"g": 1.3}),
]


@pytest.fixture(scope="module", autouse=True)
def toy_tools():
    for name, task, fn, params in TOY_SPECS:
        register(ToolSpec(name=name, task=task, kind="classical", description="test tool", function=fn, params=params))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    from restoreagent.imageio import save_image

    d = tmp_path_factory.mktemp("imgs") / "train_photos"
    d.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        save_image(getattr(data, name)()[:96, :112].astype(np.float32) / 255.0, d / f"{name}.png")
    return d


def _pair(seed=0, size=40):
    from skimage import data

    from restoreagent.degradations import degrade
    from restoreagent.imageio import quantize

    clean = data.astronaut()[100 : 100 + size, 180 : 180 + size].astype(np.float32) / 255.0
    degraded, rec = degrade(clean, chain="noise:sigma=20, jpeg:quality=30, low_light", seed=seed)
    return clean, quantize(degraded), rec


# ---- the exhaustive search: level order (batched) == depth first == naive ----------------------


def test_level_order_search_equals_depth_first_and_naive():
    clean, degraded, _ = _pair()
    scorer = Scorer(["psnr", "ssim"])
    tasks = list(TOY)
    dfs = exhaustive_search(degraded, clean, tasks=tasks, toolset=TOY, scorer=scorer, record_nodes=True, batched=False)
    lvl = exhaustive_search(degraded, clean, tasks=tasks, toolset=TOY, scorer=scorer, record_nodes=True, batched=True)
    assert [c.plan.text() for c in lvl.candidates] == [c.plan.text() for c in dfs.candidates]
    assert [c.metrics for c in lvl.candidates] == [c.metrics for c in dfs.candidates]  # bitwise: same maths
    assert [c.balanced for c in lvl.candidates] == [c.balanced for c in dfs.candidates]
    assert [(n.steps, n.metrics) for n in lvl.nodes] == [(n.steps, n.metrics) for n in dfs.nodes]
    assert lvl.tool_calls == dfs.tool_calls
    naive = naive_search(degraded, clean, tasks, TOY, scorer)
    assert {c.plan.text(): c.metrics for c in lvl.candidates} == naive


def test_batched_learned_tools_match_one_at_a_time(monkeypatch):
    """Real networks, 4 images per pass: the same ranking, metrics within 1e-4 dB / 1e-6 SSIM."""
    from restoreagent.tools.registry import get_tool

    clean, degraded, _ = _pair(size=32)
    toolset = {"denoise": ["unet_denoise_low", "unet_denoise_mid"], "dejpeg": ["unet_dejpeg_mild", "unet_dejpeg_severe"]}
    scorer = Scorer(["psnr", "ssim"])
    one = exhaustive_search(degraded, clean, tasks=list(toolset), toolset=toolset, scorer=scorer, record_nodes=True, batched=False)
    for tools in toolset.values():
        for t in tools:
            runner = get_tool(t)._fn
            monkeypatch.setattr(getattr(runner, "runner", runner), "max_batch", 4)
    assert get_tool("unet_denoise_low").max_batch == 4
    bat = exhaustive_search(degraded, clean, tasks=list(toolset), toolset=toolset, scorer=scorer, record_nodes=True)
    assert [c.plan.text() for c in bat.candidates] == [c.plan.text() for c in one.candidates]
    for a, b in zip(bat.candidates, one.candidates):
        assert abs(a.metrics["psnr"] - b.metrics["psnr"]) < 1e-4
        assert abs(a.metrics["ssim"] - b.metrics["ssim"]) < 1e-6


# ---- the beam labeler -------------------------------------------------------------------------


def test_beam_scores_are_the_exhaustive_scores_of_what_it_evaluated():
    from restoreagent.labeling.beam import beam_search

    clean, degraded, _ = _pair()
    scorer = Scorer(["psnr", "ssim"])
    ex = exhaustive_search(degraded, clean, tasks=list(TOY), toolset=TOY, scorer=scorer, record_nodes=True)
    exm = {c.plan.text(): c.metrics for c in ex.candidates}
    exn = {n.steps: n.metrics for n in ex.nodes}
    b = beam_search(degraded, clean, tasks=list(TOY), toolset=TOY, scorer=scorer, width=1, polish=0)
    assert 0 < len(b.candidates) < len(ex.candidates) and b.tool_calls < ex.tool_calls
    for c in b.candidates:
        assert exm[c.plan.text()] == c.metrics  # the same tool calls on the same images: bitwise
    for n in b.nodes:
        assert exn[n.steps] == n.metrics
        assert n.steps == () or n.steps[:-1] in {m.steps for m in b.nodes}  # every node's parent is there
    # a beam wide enough to keep every node evaluates every pipeline: the exhaustive result
    wide = beam_search(degraded, clean, tasks=list(TOY), toolset=TOY, scorer=scorer, width=10_000)
    assert sorted(c.plan.text() for c in wide.candidates) == sorted(exm)
    assert wide.best.plan.text() == ex.best.plan.text()
    assert [c.balanced for c in wide.candidates] == pytest.approx([c.balanced for c in ex.candidates], abs=1e-9)


def test_replayed_beam_makes_the_real_beams_decisions():
    """eval/label_replay.py runs the beam on an exhaustive search's saved scores: the same picks and calls."""
    import importlib.util

    from restoreagent.labeling.beam import beam_search

    spec = importlib.util.spec_from_file_location("label_replay", Path(__file__).parents[1] / "eval" / "label_replay.py")
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    clean, degraded, _ = _pair(seed=3)
    scorer = Scorer(["psnr", "ssim"])
    ex = exhaustive_search(degraded, clean, tasks=list(TOY), toolset=TOY, scorer=scorer, record_nodes=True)
    row = {"sample": 0, "k": 3, "best": ex.best.plan.text(), "exhaustive_calls": ex.tool_calls,
           "scores": replay.saved_scores(ex, decimals=None)}
    for width, polish in [(1, 0), (1, 3), (2, 3)]:
        real = beam_search(degraded, clean, tasks=list(TOY), toolset=TOY, scorer=scorer, width=width, polish=polish)
        got = replay.judge(row, width, polish)
        assert got["pick"] == real.best.plan.text() and got["calls"] == real.tool_calls
        assert got["found_best"] == (got["pick"] == ex.best.plan.text()) and got["regret"] >= -1e-9


def test_severity_restricted_search_keeps_the_plausible_tools():
    """eval/label_replay.py --severity-keep: the tools whose severity ranges lie nearest the
    recorded parameter; with nothing to restrict it is the exhaustive search itself."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("label_replay", Path(__file__).parents[1] / "eval" / "label_replay.py")
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    denoisers = ["unet_denoise_low", "unet_denoise_mid", "unet_denoise_high"]
    assert replay.plausible_tools("denoise", denoisers, {"sigma": 12.0}, 1) == ["unet_denoise_low"]
    assert replay.plausible_tools("denoise", denoisers, {"sigma": 28.0}, 2) == ["unet_denoise_mid", "unet_denoise_high"]
    sr = ["unet_sr_x2", "unet_sr_x3", "ibp_x4", "not_ranged"]
    assert replay.plausible_tools("super_resolve", sr, {"scale": 4}, 1) == ["not_ranged", "ibp_x4"]
    assert replay.plausible_tools("denoise", denoisers, {}, 1) == denoisers  # no recorded value: no restriction
    clean, degraded, _ = _pair(seed=3)
    ex = exhaustive_search(degraded, clean, tasks=list(TOY), toolset=TOY, scorer=Scorer(["psnr", "ssim"]), record_nodes=True)
    row = {"sample": 0, "k": 3, "best": ex.best.plan.text(), "exhaustive_calls": ex.tool_calls,
           "scores": replay.saved_scores(ex, decimals=None)}
    params = {"noise": {"sigma": 20.0}, "jpeg": {"quality": 30}, "low_light": {"gamma": 2.0}}
    got = replay.judge_severity_restricted(row, params, 1)  # toy tools have no severity range: nothing is cut
    assert got["pick"] == ex.best.plan.text() and got["found_best"] and got["calls"] == ex.tool_calls


def test_a_run_is_judged_in_another_runs_frame(tmp_path, capsys):
    """eval/label_beam.py --report --frame: a run's picks (say with bfloat16 tools) among another
    run's saved candidates; a pick that is not the frame's best shows as a miss with its regret."""
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "eval"))
    try:
        import label_beam
    finally:
        sys.path.pop(0)
    clean, degraded, _ = _pair(seed=3)
    ex = exhaustive_search(degraded, clean, tasks=list(TOY), toolset=TOY, scorer=Scorer(["psnr", "ssim"]), record_nodes=True)
    best, worst = ex.best.plan.text(), min(ex.candidates, key=lambda c: c.balanced).plan.text()
    frame = {"sample": 0, "k": 3, "best": best, "exhaustive_seconds": 4.0, "beams": {},
             "scores": label_beam.saved_scores(ex, decimals=None)}
    run = {"sample": 0, "k": 3, "combo": ["noise", "jpeg", "low_light"], "best": best, "exhaustive_seconds": 2.0,
           "beams": {"2": {"pick": worst, "seconds": 1.0}}}
    (tmp_path / "frame.jsonl").write_text(json.dumps(frame) + "\n")
    (tmp_path / "run.jsonl").write_text(json.dumps(run) + "\n")
    label_beam.report_in_frame(argparse.Namespace(out=str(tmp_path / "run.jsonl"), more=[], frame=[str(tmp_path / "frame.jsonl")]))
    out = capsys.readouterr().out
    lines = {line.split(" | ")[0]: line for line in out.splitlines() if line.startswith("| ")}
    assert "exhaustive best is another pipeline on 0 samples" in out and "noise: 100.0% of 1" in out
    assert lines["| exhaustive"].startswith("| exhaustive | 100.0% | 0.00% | 0.000 / 0.000 | 2 s | 2.00x")
    assert lines["| beam, width 2"].startswith("| beam, width 2 | 0.0% | ") and lines["| beam, width 2"].endswith("| 1 s | 4.00x |")


def test_proxy_labeler_replay_counts_and_judges():
    """eval/label_proxy.py: a search on a crop whose best M run at full size. Its cost accounting
    and judging on toy tools: the exhaustive search's modelled cost is one unit per tool call, a
    proxy that is the full sample itself finds the best, and confirming every candidate does too."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "eval"))
    try:
        import label_proxy
    finally:
        sys.path.pop(0)
    from restoreagent.labeling.beam import beam_search

    clean, degraded, _ = _pair(seed=3, size=48)
    scorer = Scorer(["psnr", "ssim"])

    def row(d, c):
        ex = exhaustive_search(d, c, tasks=list(TOY), toolset=TOY, scorer=scorer, record_nodes=True)
        return ex, {"sample": 0, "k": 3, "best": ex.best.plan.text(), "exhaustive_calls": ex.tool_calls,
                    "scores": label_proxy.saved_scores(ex, decimals=None)}

    ex, full = row(degraded, clean)
    _, crop = row(label_proxy.central(degraded, 24), label_proxy.central(clean, 24))
    assert label_proxy.central(degraded, 24).shape == (24, 24, 3)
    unit = {t: (1.0, 1.0) for tools in TOY.values() for t in tools} | {"score": (0.0, 0.0)}
    assert label_proxy.exhaustive_cost(full, unit, 0) == ex.tool_calls
    _, calls, _ = label_proxy.search_on(full, 2, 3)
    assert len(calls) == beam_search(degraded, clean, tasks=list(TOY), toolset=TOY, scorer=scorer, width=2).tool_calls
    itself = label_proxy.judge_proxy(full, full, 0, 3, 1, unit)
    assert itself["found_best"] and itself["regret"] == pytest.approx(0.0, abs=1e-9)
    everything = label_proxy.judge_proxy(crop, full, 0, 3, len(ex.candidates), unit)
    assert everything["found_best"] and everything["ranking"] == 0.0
    one = label_proxy.judge_proxy(crop, full, 0, 3, 1, unit)
    assert one["seconds"] == ex.tool_calls and one["regret"] >= -1e-9  # the crop's search alone, nothing confirmed


def test_beam_polish_moves_are_one_step_away():
    from restoreagent.labeling.beam import neighbours
    from restoreagent.plan import parse_plan

    steps = parse_plan("dejpeg:ct_offset, denoise:ct_gain_up", check_tools=False).steps
    got = {tuple(f"{s.task}:{s.tool}" for s in n) for n in neighbours(steps, TOY)}
    assert got == {
        ("dejpeg:ct_gain_down", "denoise:ct_gain_up"), ("dejpeg:ct_smooth5", "denoise:ct_gain_up"),
        ("dejpeg:ct_offset", "denoise:ct_smooth3"), ("denoise:ct_gain_up", "dejpeg:ct_offset"),
    }


# ---- compact records --------------------------------------------------------------------------


def _ccfg(photos, out, **kw):
    from restoreagent.jobs.label import CompactLabelConfig

    base = dict(images=(str(photos),), out=str(out), samples=5, seed=2, crop=40, toolset={k: TOY[k] for k in ("denoise", "dejpeg")},
                max_degradations=2, snow_every=0, metrics=("psnr", "ssim"), shard_size=2)
    base.update(kw)
    return CompactLabelConfig(**base)


@pytest.fixture(scope="module")
def compact(photos, tmp_path_factory):
    from restoreagent.labeling.compact import label_compact

    out = tmp_path_factory.mktemp("compact") / "labels"
    label_compact(_ccfg(photos, out, samples=3), progress=False)
    label_compact(_ccfg(photos, out), progress=False)  # grows 3 -> 5: a second run continues
    return out


def test_compact_records_rebuild_the_labeled_images(compact, photos):
    from restoreagent.degradations import degrade
    from restoreagent.imageio import load_image, quantize
    from restoreagent.labeling.compact import CompactRows, pixels_sha256, read_compact_table

    t = read_compact_table(compact)
    assert t.column("sample_id").to_pylist() == list(range(5))
    rows = CompactRows(compact)
    assert len(rows) == 5
    scorer = Scorer(["psnr", "ssim"])
    for i in range(5):
        c = rows.compact(i)
        assert "degraded" not in c and c["labeler"] == "beam(width=2,polish=3)"
        full = rows.get(i)  # rebuilt from the photo, hash-checked
        rec = json.loads(c["degradation_record"])
        folder, _, name = c["photo"].partition("/")
        assert folder == photos.name
        top, left, h, w = c["crop_box"]
        clean = load_image(photos / name)[top : top + h, left : left + w]
        degraded = quantize(degrade(clean, chain=rec["chain"], seed=rec["seed"])[0])
        assert pixels_sha256(degraded) == c["degraded_sha256"]
        # the stored scores are the search's, in float16
        ex = exhaustive_search(degraded, clean, degradations=rec["degradations"], toolset=json.loads(full["toolset"]), scorer=scorer)
        exm = {x.plan.text(): x.metrics for x in ex.candidates}
        for cand in full["candidates"]:
            for m, v in cand["metrics"].items():
                assert v == float(np.float16(exm[cand["plan"]][m]))


def test_compact_growth_keeps_finished_shards_and_matches_a_single_run(compact, photos, tmp_path):
    from restoreagent.labeling.compact import label_compact, read_compact_table

    one = tmp_path / "one"
    label_compact(_ccfg(photos, one), progress=False)
    cols = [c for c in read_compact_table(one).column_names if c != "seconds"]
    assert read_compact_table(one).select(cols).to_pylist() == read_compact_table(compact).select(cols).to_pylist()
    before = {p.name: p.read_bytes() for p in (compact / "data").iterdir()}
    label_compact(_ccfg(photos, compact, samples=7), progress=False)
    after = {p.name: p.read_bytes() for p in (compact / "data").iterdir()}
    assert all(after[k] == v for k, v in before.items() if k != "train-0000004-0000005.parquet")
    assert read_compact_table(compact).num_rows == 7
    with pytest.raises(RestoreAgentError, match="different configuration"):
        label_compact(_ccfg(photos, compact, samples=7, beam_width=3), progress=False)


def test_compact_loading_refuses_a_changed_photo_or_record(compact, photos, tmp_path):
    from restoreagent.labeling.compact import CompactRows, rebuild

    row = CompactRows(compact).compact(0)
    moved = tmp_path / photos.name
    shutil.copytree(photos, moved)
    name = row["photo"].partition("/")[2]
    with pytest.raises(RestoreAgentError, match="not found"):
        rebuild(row, {photos.name: tmp_path / "nowhere"})
    rebuild(row, {photos.name: moved})  # moved photos are fine
    (moved / name).write_bytes((moved / name).read_bytes() + b"\0")
    with pytest.raises(RestoreAgentError, match="sha256 differs"):
        rebuild(row, {photos.name: moved})
    bad = dict(row, degraded_sha256="0" * 16)
    with pytest.raises(RestoreAgentError, match="rebuilt degraded image differs"):
        rebuild(bad, {photos.name: photos})


def test_build_sft_reads_compact_records(compact, tmp_path):
    from restoreagent.jobs.label import SFTConfig
    from restoreagent.labeling.sft import build_sft, load_sft

    s = build_sft(SFTConfig(labeled=str(compact), out=str(tmp_path / "sft"), clean_stop_prob=0.5), progress=False)
    assert s["samples"] == 7 and s["examples"] > 7
    dd = load_sft(tmp_path / "sft")
    assert set(dd["train"]["scenario"]) >= {"full_plan", "stop"}


def test_compact_records_are_small(compact):
    """The budget: 23k samples in at most 50 MB (measured here on toy searches; docs/labeling.md has the real one)."""
    from restoreagent.labeling.compact import read_compact_table

    t = read_compact_table(compact)
    per_row = sum(len(v) for v in t.column("candidates").to_pylist()) + sum(len(v) for v in t.column("candidate_scores").to_pylist())
    assert per_row / t.num_rows < 400


def test_compact_exhaustive_labeler_stores_every_candidate(photos, tmp_path):
    from restoreagent.labeling.compact import CompactRows, label_compact
    from restoreagent.search import count_pipelines

    out = tmp_path / "ex"
    label_compact(_ccfg(photos, out, samples=2, labeler="exhaustive"), progress=False)
    rows = CompactRows(out)
    for i in range(2):
        full = rows.get(i)
        assert full["n_candidates"] == count_pipelines(json.loads(full["toolset"]))


def test_bad_compact_config_is_refused(photos, tmp_path):
    from restoreagent.labeling.compact import label_compact

    with pytest.raises(RestoreAgentError):
        label_compact(_ccfg(photos, tmp_path / "x", beam_width=0), progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(RestoreAgentError, match="not empty"):
        label_compact(_ccfg(photos, tmp_path / "notes"), progress=False)
    assert Path(tmp_path / "notes" / "a.txt").read_text() == "x"


def test_fewer_samples_than_labeled_is_refused_and_nothing_is_lost(compact, photos):
    from restoreagent.labeling.compact import label_compact, read_compact_table

    n = read_compact_table(compact).num_rows
    before = {p.name: p.read_bytes() for p in (compact / "data").iterdir()}
    with pytest.raises(RestoreAgentError, match="would drop some"):
        label_compact(_ccfg(photos, compact, samples=n - 2), progress=False)
    assert {p.name: p.read_bytes() for p in (compact / "data").iterdir()} == before


def test_card_command_describes_a_compact_dataset(compact, capsys):
    from restoreagent.cli import main

    assert main(["dataset", "card", str(compact), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["samples"] >= 5 and st["labelers"] == {"beam(width=2,polish=3)": st["samples"]}
    assert "label-compact" in (compact / "README.md").read_text()


def test_the_committed_dataset_rebuilds_its_images():
    """The records in labels/: the first sample of every shard rebuilds to its stored hash (needs the train photos)."""
    from restoreagent.labeling.compact import CompactRows, rebuild
    from restoreagent.splits import TRAIN_FOLDERS

    root = Path(__file__).resolve().parents[1]
    out = root / "labels" / "restoreagent-labels-v1"
    folders = [root / f for f in TRAIN_FOLDERS]
    if not (out / "data").is_dir() or not any((out / "data").iterdir()) or not all(f.is_dir() for f in folders):
        pytest.skip("no committed shard yet, or the train photos are not beside this checkout")
    rows = CompactRows(out, images=[str(f) for f in folders])
    for a, _, _ in rows.ranges:
        row = rows.compact(a)
        assert row["sample_id"] == a
        rebuild(row, rows.roots)  # raises if the photo or the rebuilt degraded crop differs


def test_smoke_config_labels_core_and_snow_samples_with_the_real_tools(tmp_path, monkeypatch):
    from restoreagent.jobs import run_job
    from restoreagent.labeling.compact import CompactRows

    root = Path(__file__).resolve().parents[1]
    for link in ("examples", "configs"):
        (tmp_path / link).symlink_to(root / link)
    monkeypatch.chdir(tmp_path)
    run_job("label-compact", {}, files=["configs/smoke/label-compact.yaml"])
    rows = CompactRows(tmp_path / "runs" / "smoke" / "labels-compact")
    degs = [rows.get(i)["degradations"] for i in range(len(rows))]
    assert len(degs) == 3 and "snow" in degs[2] and all("snow" not in d for d in degs[:2])
