"""The labeler, its resumable sharded output, worker/Ray backends, the SFT builder and cards.

Toy tools (tests/toytools.py, plus a slow one written to tmp) keep these independent of the
real toolbox; one test uses the real registry for a single degradation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from restoreagent.dialogue import Answer, History, parse_answer, prompt
from restoreagent.errors import RestoreAgentError
from restoreagent.plan import Plan, Step, parse_plan
from restoreagent.search import count_pipelines, count_tree_calls
from restoreagent.tools.registry import ToolSpec, register

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

TOY = {
    "denoise": ["lt_gain_up", "lt_smooth3"],
    "dejpeg": ["lt_gain_down", "lt_smooth5", "lt_offset"],
}
TOY_SPECS = [
    ("lt_gain_up", "denoise", "toytools:gain", {"g": 1.1}),
    ("lt_smooth3", "denoise", "toytools:smooth", {"k": 3}),
    ("lt_gain_down", "dejpeg", "toytools:gain", {"g": 0.9}),
    ("lt_smooth5", "dejpeg", "toytools:smooth", {"k": 5}),
    ("lt_offset", "dejpeg", "toytools:offset", {"b": 0.03}),
]
TIMING = ("search_seconds", "seconds")


@pytest.fixture(scope="module", autouse=True)
def toy_tools():
    for name, task, fn, params in TOY_SPECS:
        register(ToolSpec(name=name, task=task, kind="classical", description="test tool", function=fn, params=params))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three small photos from scikit-image in a folder (never ../shared data)."""
    from skimage import data

    from restoreagent.imageio import save_image

    d = tmp_path_factory.mktemp("imgs") / "train_imgs"
    d.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        a = getattr(data, name)()
        save_image(a[:96, :112].astype(np.float32) / 255.0, d / f"{name}.png")
    return d


def _cfg(images, out, **kw):
    from restoreagent.labeling.labeler import LabelConfig

    base = dict(images=(str(images),), out=str(out), samples=6, seed=3, crop=48, toolset=TOY, max_degradations=2, shard_size=4)
    base.update(kw)
    return LabelConfig(**base)


def _records(path) -> list[dict]:
    from restoreagent.labeling.labeler import read_labeled_table

    return read_labeled_table(path).to_pylist()


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.fixture(scope="module")
def labeled(images, tmp_path_factory):
    from restoreagent.labeling.labeler import label_dataset

    out = tmp_path_factory.mktemp("lab") / "labeled"
    label_dataset(_cfg(images, out), progress=False)
    return out


# ---- the labeled records ------------------------------------------------------------------------


def test_records_schema_and_contents(labeled, images):
    from restoreagent.degradations import degrade
    from restoreagent.executor import execute
    from restoreagent.imageio import decode_png, load_image, quantize
    from restoreagent.labeling.labeler import load_labeled
    from restoreagent.scoring import Scorer

    man = json.loads((labeled / "manifest.json").read_text())
    assert man["status"] == "complete" and man["n"] == 6
    assert [p.name for p in sorted((labeled / "data").glob("*.parquet"))] == ["train-0000000-0000004.parquet", "train-0000004-0000006.parquet"]
    ds = load_labeled(labeled)
    import datasets

    assert isinstance(ds.features["degraded"], datasets.Image)
    assert ds["sample_id"] == list(range(6))
    assert ds[0]["degraded"].size == (48, 48)
    rows = _records(labeled)
    scorer = Scorer(["psnr", "ssim"])
    for r in rows:
        toolset = json.loads(r["toolset"])
        assert set(toolset) == set(r["tasks"]) and 1 <= r["n_degradations"] <= 2
        assert r["n_candidates"] == len(r["candidates"]) == count_pipelines(toolset)
        assert r["tool_calls"] == count_tree_calls(toolset) and r["naive_tool_calls"] == count_pipelines(toolset) * len(toolset)
        assert r["best_plan"] == r["candidates"][0]["plan"]
        scores = [c["balanced"] for c in r["candidates"]]
        assert scores == sorted(scores, reverse=True)
        assert r["nodes"][0]["steps"] == "none"  # root: the degraded image; then one node per first step
        assert len(r["nodes"]) == 1 + (sum(len(v) for v in toolset.values()) if r["n_degradations"] == 2 else 0)
        assert r["metric_names"] == ["psnr", "ssim"] and set(r["zstats"]["mean"]) == {"psnr", "ssim"}
        assert r["clean_root"] == "train_imgs" and (images / r["clean_path"]).exists()
        # the clean image is referenced, never copied: rebuild the crop, then the degraded image
        top, left, h, w = r["crop_box"]
        assert (h, w) == (48, 48)
        clean = load_image(images / r["clean_path"])[top : top + h, left : left + w]
        record = json.loads(r["degradation_record"])
        again, _ = degrade(clean, chain=record["chain"], seed=record["seed"])
        stored = decode_png(r["degraded"]["bytes"])
        np.testing.assert_array_equal(quantize(again), stored)
        # the stored PNG is exactly what was searched: replaying the best plan gives its metrics
        restored, _ = execute(parse_plan(r["best_plan"]), stored)
        assert scorer(restored, clean) == r["candidates"][0]["metrics"]
    # the labeled folder is also a plain Hugging Face dataset folder
    hf = datasets.load_dataset(str(labeled), split="train", cache_dir=str(labeled.parent / "hfcache"))
    assert hf["sample_id"] == list(range(6))


def test_card_written(labeled):
    from restoreagent.labeling.card import labeled_stats

    readme = (labeled / "README.md").read_text()
    for needle in ("configs:", "## Samples per degradation combination", "## Which task order is best", "## Which tool is best", "fixed expert recipe", "prefix tree"):
        assert needle in readme
    assert (labeled / "card.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    st = labeled_stats(labeled)
    assert st["samples"] == 6 and sum(v["samples"] for v in st["combinations"].values()) == 6
    assert st["tool_calls_mean"] <= st["naive_tool_calls_mean"]
    assert 0 <= st["fixed_optimal"] <= 1


def test_grow_and_reshard_resumes(labeled, images, tmp_path):
    """More samples / another shard size later: old samples are kept, new ones appended."""
    import shutil

    from restoreagent.labeling.labeler import label_dataset

    out = tmp_path / "grow"
    shutil.copytree(labeled, out)
    s = label_dataset(_cfg(images, out, samples=8, shard_size=3), progress=False)
    assert s["computed"] == 2  # only samples 6 and 7 were labeled now
    rows = _records(out)
    assert [r["sample_id"] for r in rows] == list(range(8))
    assert _strip(rows[:6]) == _strip(_records(labeled))


def test_config_mismatch_and_bad_inputs_are_refused(labeled, images, tmp_path):
    from restoreagent.labeling.labeler import label_dataset

    with pytest.raises(RestoreAgentError, match=r"different configuration \(seed: 3 -> 4"):
        label_dataset(_cfg(images, labeled, seed=4), progress=False)
    dev = tmp_path / "cbsd68"
    dev.symlink_to(images, target_is_directory=True)
    with pytest.raises(RestoreAgentError, match="dev split"):
        label_dataset(_cfg(dev, tmp_path / "x"), progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(RestoreAgentError, match="not empty"):
        label_dataset(_cfg(images, tmp_path / "full"), progress=False)
    with pytest.raises(RestoreAgentError, match="unknown tool 'nope' for denoise"):
        label_dataset(_cfg(images, tmp_path / "y", toolset={"denoise": ["nope"]}), progress=False)
    with pytest.raises(RestoreAgentError, match="--ray-address needs --backend ray"):
        label_dataset(_cfg(images, tmp_path / "z", ray_address="127.0.0.1:1"), progress=False)


def test_tool_code_change_is_refused_unless_accepted(labeled, images, tmp_path, monkeypatch):
    import shutil

    from restoreagent.labeling import labeler

    code = labeler.tool_code_fingerprints(TOY)
    assert set(code) == {t for v in TOY.values() for t in v}
    out = tmp_path / "lab"
    shutil.copytree(labeled, out)
    monkeypatch.setattr(labeler, "tool_code_fingerprints", lambda ts: {**code, "lt_smooth3": "edited"})
    with pytest.raises(RestoreAgentError, match=r"code of tool\(s\) lt_smooth3 changed"):
        labeler.label_dataset(_cfg(images, out, samples=7), progress=False)
    labeler.label_dataset(_cfg(images, out, samples=7, accept_tool_changes=True), progress=False)
    man = json.loads((out / "manifest.json").read_text())
    assert man["tool_code"]["lt_smooth3"] == "edited" and man["tool_code_changes"] == [{"done": 6, "tools": ["lt_smooth3"]}]


# ---- kill -9 and resume ----------------------------------------------------------------------

SLOW_TOOLS = '''
import time
import numpy as np

def slow_gain(image, g, delay):
    time.sleep(delay)
    return np.clip(image * g, 0, 1)
'''

RUNNER = '''
import sys
from restoreagent.tools.registry import ToolSpec, register
for name, task, fn, params in {specs!r}:
    register(ToolSpec(name=name, task=task, kind="classical", description="t", function=fn, params=params))
if __name__ == "__main__":  # the spawned workers import this file too
    from restoreagent.cli import main
    sys.exit(main(sys.argv[1:]))
'''


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _slow_setup(tmp_path):
    (tmp_path / "slowtools.py").write_text(SLOW_TOOLS)
    specs = TOY_SPECS + [("lt_slow", "denoise", "slowtools:slow_gain", {"g": 0.97, "delay": 0.03})]
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER.format(specs=specs))
    (tmp_path / "toolset.yaml").write_text(json.dumps({"denoise": ["lt_slow", "lt_smooth3"], "dejpeg": TOY["dejpeg"]}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "tests"), str(ROOT)])}
    return runner, specs, env


def test_kill_9_then_resume_loses_and_duplicates_nothing(images, tmp_path, capsys):
    """``kill -9`` a 2-worker run mid-way, re-run it (1 worker): every sample once, equal to an
    uninterrupted run with another shard size (same seed, same dataset); orphaned workers exit."""
    from restoreagent.jobs.label import load_toolset_file
    from restoreagent.labeling.labeler import label_dataset

    runner, specs, env = _slow_setup(tmp_path)
    out = tmp_path / "killed"
    n = 12
    args = ["label", "--images", str(images), "--out", str(out), "--samples", str(n), "--seed", "5", "--crop", "48", "--workers", "2",
            "--max-degradations", "2", "--shard-size", "2", "--toolset", str(tmp_path / "toolset.yaml"), "--no-progress"]
    proc = subprocess.Popen([PY, str(runner), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    workers = []
    try:
        deadline = time.monotonic() + 90
        while not list((out / "data").glob("train-*.parquet")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard finished in 90 s"
            time.sleep(0.02)
        workers = [c for c in _children(proc.pid) if c != proc.pid]
        proc.send_signal(signal.SIGKILL)  # the driver only, as `kill -9 PID` does
        proc.wait(10)
        man = json.loads((out / "manifest.json").read_text())
        assert man["status"] == "running" and len(list((out / "data").glob("train-*.parquet"))) < n // 2  # stopped mid-run
        gone = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < gone:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "pool workers outlived their killed driver"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever this test started and is still there
        except ProcessLookupError:
            pass
    resume = [a if a != "2" or args[i - 1] != "--workers" else "1" for i, a in enumerate(args)]  # any worker count resumes
    done = subprocess.run([PY, str(runner), *resume], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert 0 < int(done.stdout.split("(")[1].split()[0]) < n  # only the missing samples were labeled
    rows = _records(out)
    assert [r["sample_id"] for r in rows] == list(range(n))
    assert not (out / ".work").exists()
    sys.path.insert(0, str(tmp_path))
    try:
        for name, task, fn, params in specs:
            register(ToolSpec(name=name, task=task, kind="classical", description="t", function=fn, params=params))
        ref = tmp_path / "ref"
        toolset = load_toolset_file(tmp_path / "toolset.yaml")
        label_dataset(_cfg(images, ref, samples=n, seed=5, shard_size=3, toolset=toolset), progress=False)
        # the same folder with another configuration is refused, with a one-line reason
        from restoreagent.cli import main

        assert main([*args[:-1], "--seed", "6", "--no-progress"]) == 2
        assert "different configuration (seed: 5 -> 6)" in capsys.readouterr().err
    finally:
        sys.path.remove(str(tmp_path))
    assert _strip(rows) == _strip(_records(ref))


# ---- SFT --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sft(labeled, tmp_path_factory):
    from restoreagent.labeling.sft import SFTConfig, build_sft

    out = tmp_path_factory.mktemp("sft") / "sft"
    stats = build_sft(SFTConfig(labeled=str(labeled), out=str(out), seed=1, clean_stop_prob=0.5, val_fraction=0.3), progress=False)
    return out, stats


def test_sft_columns_splits_and_dialogue_formats(sft, labeled):
    import datasets

    out, stats = sft
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "validation"}
    for split in dd.values():
        assert {"image", "prompt", "target", "scenario", "sample_id"} <= set(split.column_names)
        assert isinstance(split.features["image"], datasets.Image)
    train_ids, val_ids = set(dd["train"]["sample_id"]), set(dd["validation"]["sample_id"])
    assert train_ids | val_ids == set(range(6)) and not train_ids & val_ids  # split by labeled sample
    assert stats["examples"] == len(dd["train"]) + len(dd["validation"])
    assert set(stats["scenarios"]) == {"full_plan", "partial", "rollback", "after_rollback", "stop"}
    rows = {r["sample_id"]: r for r in _records(labeled)}
    for ex in datasets.concatenate_datasets([dd["train"], dd["validation"]]).remove_columns("image"):
        ans = parse_answer(ex["target"], check_tools=False)
        assert ans.text() == ex["target"]  # written by dialogue.Answer
        assert ex["prompt"].startswith(prompt())
        r = rows[ex["sample_id"]]
        if ex["scenario"] == "full_plan":
            assert ex["prompt"] == prompt(History())
            assert ex["target"] == Answer(tuple(r["degradations"]), parse_plan(r["best_plan"], check_tools=False)).text()
        elif ex["scenario"] == "rollback":
            assert ans.rollback and "last: " in ex["prompt"]
        elif ex["scenario"] == "after_rollback":
            bad = ex["prompt"].split("rolled back: ")[1].rstrip(".").split(";")[0]
            assert bad not in ex["target"] and not ans.stop
        elif ex["scenario"] == "stop":
            assert ans.stop and ex["target"] == "saw: none | plan: none"
        else:
            assert ex["scenario"] == "partial" and "last: " in ex["prompt"] and not ans.stop
    assert (out / "README.md").exists() and (out / "card.png").exists()


def test_sft_images_replay_the_tree_and_are_deterministic(sft, labeled, tmp_path):
    """Stop-after-best images are the best pipeline run on the stored image; same seed, same bytes."""
    import datasets

    from restoreagent.executor import execute
    from restoreagent.imageio import decode_png, png_bytes
    from restoreagent.labeling.sft import SFTConfig, build_sft

    out, _ = sft
    dd = datasets.load_from_disk(str(out)).cast_column("image", datasets.Image(decode=False))
    rows = {r["sample_id"]: r for r in _records(labeled)}
    checked = 0
    for split in dd.values():
        for ex in split:
            if ex["scenario"] == "stop" and "last: " in ex["prompt"] and "rolled back" not in ex["prompt"]:
                r = rows[ex["sample_id"]]
                img, _ = execute(parse_plan(r["best_plan"]), decode_png(r["degraded"]["bytes"]))
                assert ex["image"]["bytes"] == png_bytes(img)
                checked += 1
            if ex["scenario"] == "partial" and ex["prompt"].endswith(f"last: {rows[ex['sample_id']]['best_plan'].split(',')[0]}."):
                first = parse_plan(rows[ex["sample_id"]]["best_plan"]).steps[0]
                img, _ = execute(Plan((first,)), decode_png(rows[ex["sample_id"]]["degraded"]["bytes"]))
                assert ex["image"]["bytes"] == png_bytes(img)
    assert checked == 6
    again = tmp_path / "again"
    build_sft(SFTConfig(labeled=str(labeled), out=str(again), seed=1, clean_stop_prob=0.5, val_fraction=0.3, workers=1, shard_size=2), progress=False)
    d2 = datasets.load_from_disk(str(again)).cast_column("image", datasets.Image(decode=False))
    for k in dd:
        assert dd[k].to_list() == d2[k].to_list()


def test_sample_tree_rollback_logic():
    """Harmful steps, their alternatives and detours on a hand-made two-task tree."""
    from restoreagent.labeling.sft import SampleTree

    def m(p, s):
        return {"psnr": p, "ssim": s}

    # denoise a/b, dejpeg x; b is harmful from the root (-2 dB), a is the best path
    cands = [("denoise:a, dejpeg:x", m(30, 0.9)), ("dejpeg:x, denoise:a", m(29, 0.88)), ("dejpeg:x, denoise:b", m(27, 0.8)), ("denoise:b, dejpeg:x", m(24, 0.7))]
    mean = {k: float(np.mean([c[1][k] for c in cands])) for k in ("psnr", "ssim")}
    std = {k: float(np.std([c[1][k] for c in cands])) for k in ("psnr", "ssim")}
    from restoreagent.scoring import ZStats

    z = ZStats(mean, std)
    row = {
        "tasks": ["denoise", "dejpeg"], "toolset": json.dumps({"denoise": ["a", "b"], "dejpeg": ["x"]}), "metric_names": ["psnr", "ssim"],
        "tool_calls": 7, "naive_tool_calls": 8, "search_seconds": 0.0, "zstats": {"mean": mean, "std": std},
        "candidates": [{"plan": p, "metrics": mm, "balanced": z.balanced(mm)} for p, mm in cands],
        "nodes": [{"steps": "none", "metrics": m(25, 0.75)}, {"steps": "denoise:a", "metrics": m(27, 0.8)}, {"steps": "denoise:b", "metrics": m(23, 0.7)}, {"steps": "dejpeg:x", "metrics": m(26, 0.78)}],
        "degradations": ["noise", "jpeg"],
    }
    t = SampleTree(row)
    a, b, x = Step("denoise", "a"), Step("denoise", "b"), Step("dejpeg", "x")
    assert t.best == (a, x)
    assert t.harmful[(b,)] and not t.harmful[(a,)] and not t.harmful[(x,)]
    assert t.rollback_edges() == [((), b)]  # from the root, on the best path, with an alternative
    assert t.best_with((), banned={b}).steps == (a, x)
    assert t.best_with((x,), banned={a}).steps == (x, b)
    assert t.remaining((a,)) == ("jpeg",)
    assert t.detour_prefixes() == [(x,)]


# ---- the real registry, Ray, the CLI and the build job ---------------------------------------


def test_real_registry_one_degradation(images, tmp_path, monkeypatch):
    from restoreagent.labeling.labeler import label_dataset
    from restoreagent.tasks import DEGRADATIONS, TASK_FOR_DEGRADATION
    from restoreagent.tools import registry

    monkeypatch.setattr(registry, "_EXTRA_SPECS", {})  # the catalogue only, no toy tools
    registry.get_tool.cache_clear()
    usable = [d for d in DEGRADATIONS if registry.tools_for_task(TASK_FOR_DEGRADATION[d])]
    if not usable:
        pytest.skip("no real tool is available yet")
    deg = "noise" if "noise" in usable else usable[0]
    out = tmp_path / "real"
    label_dataset(_cfg(images, out, samples=2, toolset=None, degradations=(deg,), max_degradations=1, crop=40), progress=False)
    rows = _records(out)
    assert [r["degradations"] for r in rows] == [[deg], [deg]]
    tools = registry.tools_for_task(TASK_FOR_DEGRADATION[deg])
    assert rows[0]["n_candidates"] == len(tools) and json.loads(rows[0]["toolset"]) == {TASK_FOR_DEGRADATION[deg]: tools}
    registry.get_tool.cache_clear()


def test_ray_backend_matches_local(labeled, images, tmp_path):
    ray = pytest.importorskip("ray")
    from restoreagent.labeling.labeler import label_dataset

    t0 = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1")
    try:
        label_dataset(_cfg(images, tmp_path / "ray", backend="ray"), progress=False)
    finally:
        ray.shutdown()
    assert _strip(_records(tmp_path / "ray")) == _strip(_records(labeled))
    print(f"ray test: {time.monotonic() - t0:.1f} s")


RAY_HEAD = """
import sys, ray
ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # until the test closes our stdin
ray.shutdown()
"""


@pytest.mark.slow
def test_ray_backend_joins_a_running_cluster_by_address(labeled, images, tmp_path):
    """`restoreagent label --backend ray --ray-address ADDR`: a cluster started by another process,
    joined through loopback (Ray's token auth is on by default: the joiner sets RAY_AUTH_MODE=token)."""
    pytest.importorskip("ray")
    runner, _, env = _slow_setup(tmp_path)
    env["RAY_AUTH_MODE"] = "token"
    (tmp_path / "toy.yaml").write_text(json.dumps(TOY))
    head = subprocess.Popen([PY, "-c", RAY_HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        address = "127.0.0.1:" + head.stdout.readline().strip().rsplit(":", 1)[1]
        out = tmp_path / "ray"
        run = subprocess.run(
            [PY, str(runner), "label", "--images", str(images), "--out", str(out), "--samples", "6", "--seed", "3", "--crop", "48",
             "--max-degradations", "2", "--shard-size", "4", "--toolset", str(tmp_path / "toy.yaml"), "--no-progress",
             "--backend", "ray", "--ray-address", address],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
    finally:
        head.stdin.close()
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
    assert _strip(_records(out)) == _strip(_records(labeled))


def test_cli_label_and_build_sft(images, tmp_path, capsys):
    from restoreagent.cli import main
    from restoreagent.labeling.sft import load_sft

    (tmp_path / "ts.yaml").write_text("denoise: [lt_smooth3, lt_gain_up]\n")
    out, sft = tmp_path / "cli", tmp_path / "cli_sft"
    rc = main(["label", "--images", str(images), "--out", str(out), "--samples", "3", "--crop", "40", "--toolset", str(tmp_path / "ts.yaml"), "--no-progress"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    assert main(["dataset", "build-sft", str(out), "--out", str(sft), "--val-fraction", "0", "--no-progress"]) == 0
    assert "full_plan 3" in capsys.readouterr().out
    assert set(load_sft(sft)["train"]["sample_id"]) == {0, 1, 2}
    assert main(["dataset", "build-sft", str(out), "--out", str(sft), "--val-fraction", "0", "--no-progress"]) == 0  # already built: no-op
    assert main(["dataset", "build-sft", str(out), "--out", str(sft), "--seed", "9", "--no-progress"]) == 2
    assert "different configuration" in capsys.readouterr().err
    assert main(["dataset", "card", str(out)]) == 0
    assert main(["label", "--images", str(images), "--out", str(tmp_path / "e"), "--samples", "0"]) == 2


def test_build_job_labels_then_builds_sft(images, tmp_path):
    """Stages of a build run in order and share values; the label job refuses a dev split."""
    from restoreagent.jobs import run_job
    from restoreagent.labeling.sft import load_sft

    out = tmp_path / "d"
    stages = {
        "data": {"job": "label", "config": {"images": [str(images)], "out": f"{out}/labeled", "samples": 2, "crop": 40,
                                             "toolset": {"denoise": ["lt_smooth3"]}}},
        "sft": {"job": "build-sft", "config": {"labeled": f"{out}/labeled", "out": f"{out}/sft", "val_fraction": 0}},
    }
    res = run_job("build", {"stages": stages})
    assert res["stages"]["data"]["samples"] == 2 and res["stages"]["sft"]["samples"] == 2
    assert (out / "labeled" / "README.md").exists() and set(load_sft(out / "sft")["train"]["sample_id"]) == {0, 1}
    dev = tmp_path / "cbsd68"
    dev.mkdir()
    (dev / "a.png").write_bytes((images / "astronaut.png").read_bytes())
    with pytest.raises(RestoreAgentError, match="dev split"):
        run_job("label", {"images": [str(dev)], "out": str(tmp_path / "x"), "samples": 1})


@pytest.mark.parametrize(
    "extra",
    [
        {"combos_file": "configs/bench/restoreagent_combos.txt"},
        {"min_degradations": 2, "max_degradations": 3, "degradations": ["noise", "jpeg", "haze"], "crop_mode": "center"},
    ],
)
def test_card_command_remakes_the_same_configuration(monkeypatch, extra):
    """The command a card prints parses back to the configuration that made the dataset."""
    import shlex
    from dataclasses import asdict

    from restoreagent.cli import main
    from restoreagent.labeling.card import label_command
    from restoreagent.labeling.labeler import LabelConfig

    lc = {**asdict(LabelConfig(images=("a/photos", "b/more"), out="data/x", samples=40, seed=3, crop=96)), **extra}
    got = {}
    monkeypatch.setattr("restoreagent.labeling.labeler.label_dataset", lambda cfg, progress: got.setdefault("cfg", cfg) and {"computed": 0, "units_per_second": 0.0})
    argv = shlex.split(label_command(lc))
    assert argv[:2] == ["restoreagent", "label"]
    main(argv[1:])
    cfg = asdict(got["cfg"])
    for key in ("images", "out", "samples", "seed", "crop", "crop_mode", "combos_file", "min_degradations", "max_degradations"):
        assert tuple(cfg[key]) == tuple(lc[key]) if isinstance(lc[key], list | tuple) else cfg[key] == lc[key], key
    assert (cfg["degradations"] and list(cfg["degradations"])) == (lc["degradations"] or None)
