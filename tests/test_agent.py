"""The agent loop (one-shot and stepwise with rollback), the severity-matched teacher plans, and the
benchmark of the stepwise loop (vlm_stepwise) next to one-shot planners."""

import json

import numpy as np
import pytest

from restoreagent.agent import restore_auto
from restoreagent.dialogue import Answer, History, parse_answer
from restoreagent.plan import Step
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
    assert (
        planner.histories[4].done[-1].tool == "dejpeg_mild"
        or planner.histories[4].last_step.tool == "dejpeg_mild"
    )


def test_stepwise_rollback_restores_the_previous_image(astronaut_small):
    planner = ScriptedPlanner(["saw: noise | plan: denoise:dct_high", "rollback", "saw: none | plan: none"])
    out, report = restore_auto(astronaut_small, planner=planner, stepwise=True)
    assert np.array_equal(out, astronaut_small)
    assert report["steps"][0]["kept"] is False
    assert report["steps"][0]["rolled_back_by"] == "planner"


def test_severity_matched_plan_picks_the_variant_for_the_severity(monkeypatch):
    def plan(chain):
        return severity_matched_plan({"chain": [{"name": n, "params": p} for n, p in chain]}).text()

    # the shipped toolbox: learned variants are listed first, so they are the teachers' choice
    assert plan([("noise", {"sigma": 8})]) == "denoise:unet_denoise_low"
    assert plan([("noise", {"sigma": 40})]) == "denoise:unet_denoise_high"
    assert plan([("noise", {"sigma": 22}), ("jpeg", {"quality": 12})]) == (
        "dejpeg:unet_dejpeg_severe, denoise:unet_denoise_mid"
    )
    assert plan([("low_resolution", {"scale": 4}), ("haze", {"beta": 1.5, "A": 0.8})]) == (
        "super_resolve:unet_sr_x4, dehaze:unet_dehaze"
    )
    # with the classical tools only, their own ranges apply
    from restoreagent.planners import baselines
    from restoreagent.tools.registry import list_specs

    classical = lambda task: [s.name for s in list_specs(task) if s.kind == "classical"]  # noqa: E731
    monkeypatch.setattr(baselines, "tools_for_task", classical)
    assert plan([("noise", {"sigma": 8})]) == "denoise:dct_low"
    assert (
        plan([("noise", {"sigma": 22}), ("jpeg", {"quality": 12})]) == "dejpeg:dejpeg_severe, denoise:dct_mid"
    )
    assert plan([("low_resolution", {"scale": 4}), ("haze", {"beta": 1.5, "A": 0.8})]) == (
        "super_resolve:ibp_x4, dehaze:dcp_dense"
    )
    answer = Answer(("noise",), severity_matched_plan({"chain": [{"name": "noise", "params": {"sigma": 5}}]}))
    assert answer.text() == "saw: noise | plan: denoise:dct_low"


def test_stepwise_run_tells_the_kept_plan_calls_and_rollbacks(astronaut_small):
    from restoreagent.agent import stepwise_restore

    planner = ScriptedPlanner(
        [
            "saw: noise | plan: denoise:dct_high",
            "rollback",
            "saw: noise | plan: denoise:dct_low",
            "saw: none | plan: none",
        ]
    )
    run = stepwise_restore(astronaut_small, planner)
    assert run.kept_plan.text() == "denoise:dct_low"
    assert (run.planner_calls, run.rollbacks) == (4, 1)
    assert run.answers[0].degradations == ("noise",)
    assert run.log()["answers"][1] == "rollback"
    # restore_auto's report (what `run --auto --stepwise --json` prints) keeps its keys and text answers
    _, report = restore_auto(
        astronaut_small,
        planner=ScriptedPlanner(["saw: noise | plan: denoise:dct_low", "saw: none | plan: none"]),
        stepwise=True,
    )
    assert list(report) == ["mode", "plan", "answers", "steps", "seconds"]
    assert report["answers"] == ["saw: noise | plan: denoise:dct_low", "saw: none | plan: none"]


# ---- the quality check of the stepwise loop (restoreagent/quality.py) ---------------------------
# A toy denoiser that adds noise (the check must undo it) and one that smooths (it must keep it).

QC_TOY_SPECS = [
    ("qc_noisy", "denoise", "toytools:add_noise", {"sigma": 0.08}),
    ("qc_smooth", "denoise", "toytools:smooth", {"k": 3}),
    ("qc_brighter", "brighten", "toytools:offset", {"b": 0.2}),
]


@pytest.fixture
def qc_tools():
    from restoreagent.tools import registry

    for name, task, fn, params in QC_TOY_SPECS:
        registry.register(
            registry.ToolSpec(
                name=name, task=task, kind="classical", description="test tool", function=fn, params=params
            )
        )
    yield {name: registry.get_tool(name) for name, *_ in QC_TOY_SPECS}
    for name, *_ in QC_TOY_SPECS:
        registry._EXTRA_SPECS.pop(name, None)
    registry.get_tool.cache_clear()


def test_quality_check_rolls_back_a_harmful_step_and_the_planner_is_told(astronaut_small, qc_tools):
    from restoreagent.agent import stepwise_restore
    from restoreagent.dialogue import prompt

    planner = ScriptedPlanner(
        [
            "saw: noise | plan: denoise:qc_noisy",
            "saw: noise | plan: denoise:qc_smooth",  # another tool for the task
            "saw: none | plan: none",
        ]
    )
    run = stepwise_restore(astronaut_small, planner)  # the default check
    first, second = run.steps
    assert (first["tool"], first["kept"], first["rolled_back_by"]) == ("qc_noisy", False, "quality")
    (verdict,) = first["quality"]
    assert verdict["check"] == "noise" and verdict["rejected"] and verdict["worse_by"] > verdict["margin"]
    assert (second["tool"], second["kept"], "rolled_back_by" in second) == ("qc_smooth", True, False)
    assert second["quality"][0]["rejected"] is False and second["quality"][0]["worse_by"] < 0
    # the next prompt says the step was rolled back (and asks nothing about it), as after a planner rollback
    assert planner.histories[1] == History(rolled_back=(Step("denoise", "qc_noisy"),))
    assert "rolled back: denoise:qc_noisy" in prompt(planner.histories[1])
    assert planner.histories[2].last_step == Step("denoise", "qc_smooth")
    assert [a.text() for a in run.answers].count("rollback") == 0 and run.planner_calls == 3
    assert (run.rollbacks, run.quality_rollbacks) == (1, 1)
    assert run.kept_plan.text() == "denoise:qc_smooth"
    # the kept step ran on the input, not on the rolled-back noisy image
    assert np.array_equal(run.image, qc_tools["qc_smooth"](astronaut_small))


def test_quality_check_none_keeps_the_planner_only_behaviour(astronaut_small, qc_tools):
    from restoreagent.agent import stepwise_restore

    script = ["saw: noise | plan: denoise:qc_noisy", "saw: none | plan: none"]
    for off in ("none", None, ()):
        planner = ScriptedPlanner(script)
        run = stepwise_restore(astronaut_small, planner, quality_check=off)
        assert [(s["tool"], s["kept"]) for s in run.steps] == [("qc_noisy", True)]
        assert "quality" not in run.steps[0] and run.quality_rollbacks == 0
        assert planner.histories[1].last_step == Step("denoise", "qc_noisy")
        assert np.array_equal(run.image, qc_tools["qc_noisy"](astronaut_small))
    # the same script with the default check: the step is undone and the loop stops with the input
    run = stepwise_restore(astronaut_small, ScriptedPlanner(script))
    assert run.steps[0]["rolled_back_by"] == "quality" and np.array_equal(run.image, astronaut_small)


def test_quality_check_keeps_good_steps_and_judges_only_its_tasks(astronaut_small, qc_tools):
    from restoreagent.agent import stepwise_restore
    from restoreagent.degradations import degrade
    from restoreagent.quality import QualityCheck

    # real tools: a denoiser on a noisy photo and a brightener on a dark one are kept ...
    noisy, _ = degrade(astronaut_small, chain="noise:sigma=25", seed=0)
    dark, _ = degrade(astronaut_small, chain="low_light:gamma=2.0,scale=0.4", seed=0)
    for image, answer, check in (
        (noisy, "saw: noise | plan: denoise:dct_mid", "noise"),
        (dark, "saw: low_light | plan: brighten:gamma_mid", "exposure"),
    ):
        run = stepwise_restore(image, ScriptedPlanner([answer, "saw: none | plan: none"]))
        (verdict,) = run.steps[0]["quality"]
        assert run.steps[0]["kept"] and verdict["check"] == check and verdict["worse_by"] < 0
    # ... gamma_strong on the (not dark) clean photo is not
    run = stepwise_restore(
        astronaut_small,
        ScriptedPlanner(["saw: low_light | plan: brighten:gamma_strong", "saw: none | plan: none"]),
    )
    assert run.steps[0]["rolled_back_by"] == "quality" and run.steps[0]["quality"][0]["check"] == "exposure"
    # a check judges only its tasks: the noise check skips brightening (here a plain +0.2 offset)
    run = stepwise_restore(
        astronaut_small * 0.3,
        ScriptedPlanner(["saw: low_light | plan: brighten:qc_brighter", "saw: none | plan: none"]),
        quality_check="noise",
    )
    assert run.steps[0]["kept"] and "quality" not in run.steps[0]
    # a custom check (higher is better) plugs in the same way
    mean = QualityCheck(
        "mean", lambda x: float(x.mean()), higher_is_better=True, margin=0.0, tasks={"denoise"}
    )
    run = stepwise_restore(
        astronaut_small,
        ScriptedPlanner(["saw: noise | plan: denoise:dct_low", "saw: none | plan: none"]),
        quality_check=[mean],
    )
    assert run.steps[0]["quality"][0]["check"] == "mean"
    assert run.steps[0]["kept"] is (run.steps[0]["quality"][0]["worse_by"] <= 0)


def test_piqe_quality_check_runs_offline(astronaut_small):
    from restoreagent.quality import QUALITY_CHECKS, resolve_quality_checks

    assert [c.name for c in resolve_quality_checks("piqe, noise")] == ["piqe", "noise"]
    piqe = QUALITY_CHECKS["piqe"]
    assert 0.0 <= piqe.score(astronaut_small) <= 100.0
    assert not piqe.judges("denoise", astronaut_small) and piqe.judges("super_resolve", astronaut_small)
    assert not piqe.judges("super_resolve", astronaut_small[:32, :32])


def test_cli_run_stepwise_quality_check_flag(astronaut_png, tmp_path, monkeypatch, capsys, qc_tools):
    from restoreagent.cli import main

    scripts = []

    def scripted(name):
        scripts.append(ScriptedPlanner(["saw: noise | plan: denoise:qc_noisy", "saw: none | plan: none"]))
        return scripts[-1]

    monkeypatch.setattr("restoreagent.api.Agent._load_planner", lambda self: scripted(self.planner_name))
    base = ["run", str(astronaut_png), "--auto", "--stepwise", "--json"]

    def run(*extra, out):
        code = main([*base, "-o", str(tmp_path / out), *extra])
        return code, json.loads(capsys.readouterr().out) if code == 0 else None

    code, report = run(out="a.png")  # default: the noise check undoes the step
    assert (
        code == 0 and report["steps"][0]["rolled_back_by"] == "quality" and report["plan"]["text"] == "none"
    )
    code, report = run("--quality-check", "none", out="b.png")
    assert code == 0 and report["steps"][0]["kept"] and report["plan"]["text"] == "denoise:qc_noisy"
    code, report = run("--quality-check", "piqe", out="c.png")  # piqe does not judge denoising
    assert code == 0 and report["steps"][0]["kept"] and "quality" not in report["steps"][0]
    assert len(scripts) == 3
    assert main([*base, "-o", str(tmp_path / "d.png"), "--quality-check", "niqe"]) == 2
    err = capsys.readouterr().err
    assert "unknown quality check 'niqe'" in err and "noise, exposure, piqe, none" in err
    assert (
        main(["run", str(astronaut_png), "-o", str(tmp_path / "e.png"), "--plan", "none", "--quality-check", "none"])
        == 2
    )  # one-shot --auto is checked too (tests/test_quality_oneshot.py); an explicit plan is not
    assert "--quality-check needs --auto" in capsys.readouterr().err
    assert not (tmp_path / "d.png").exists() and not (tmp_path / "e.png").exists() and len(scripts) == 3


# ---- the benchmark's stepwise planner (vlm_stepwise): bench, CLI, bench job ---------------------
# Toy tools (tests/toytools.py) make the candidate set small and fixed; a policy planner stands in
# for the VLM: it answers from the execution history, so it behaves the same on every sample.

BENCH_TOY = {"denoise": ["ag_smooth3", "ag_gain_up"], "dejpeg": ["ag_smooth5", "ag_gain_down", "ag_offset"]}
BENCH_TOY_SPECS = [
    ("ag_smooth3", "denoise", "toytools:smooth", {"k": 3}),
    ("ag_gain_up", "denoise", "toytools:gain", {"g": 1.1}),
    ("ag_smooth5", "dejpeg", "toytools:smooth", {"k": 5}),
    ("ag_gain_down", "dejpeg", "toytools:gain", {"g": 0.9}),
    ("ag_offset", "dejpeg", "toytools:offset", {"b": 0.03}),
]
FIRST_PLAN = "dejpeg:ag_offset, denoise:ag_smooth3"  # its first step gets rolled back
KEPT_PLAN = "denoise:ag_smooth3, dejpeg:ag_smooth5"


class RollbackOncePlanner:
    """Tries dejpeg:ag_offset, rolls it back, then runs denoise:ag_smooth3 and dejpeg:ag_smooth5 and stops.

    ``source`` plays the VLM's model folder (the bench fingerprints its files)."""

    name = "vlm"

    def __init__(self, source):
        self.source = str(source)
        self.calls = 0

    def plan(self, request):
        self.calls += 1
        h = request.history or History()
        if h.is_empty():
            return parse_answer(f"saw: noise, jpeg | plan: {FIRST_PLAN}")
        if h.last_step == Step("dejpeg", "ag_offset"):
            return parse_answer("rollback")
        tried = {s.task for s in h.done} | ({h.last_step.task} if h.last_step else set())
        if tried >= {"denoise", "dejpeg"}:
            return parse_answer("saw: none | plan: none")
        return parse_answer(f"saw: noise, jpeg | plan: {KEPT_PLAN}")


@pytest.fixture
def bench_env(tmp_path, monkeypatch):
    """Toy toolbox (searched alone), two small photos, combos 'noise + jpeg' and 'noise', the policy as 'vlm'."""
    from skimage import data

    import restoreagent.bench as bench
    from restoreagent.imageio import save_image
    from restoreagent.planners import get_planner
    from restoreagent.planners.baselines import OraclePlanner
    from restoreagent.tools import registry

    for name, task, fn, params in BENCH_TOY_SPECS:
        registry.register(
            registry.ToolSpec(
                name=name, task=task, kind="classical", description="test tool", function=fn, params=params
            )
        )
    monkeypatch.setattr("restoreagent.search.tools_for_task", lambda task: list(BENCH_TOY[task]))
    imgs = tmp_path / "imgs"
    for i, arr in enumerate([data.astronaut(), data.coffee()]):
        save_image(arr[100:140, 100:140].astype(np.float32) / 255, imgs / f"{i}.png")
    combos = tmp_path / "combos.txt"
    combos.write_text("noise + jpeg\nnoise\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"v1")
    policy = RollbackOncePlanner(model)
    counts = {"search": 0, "oracle": 0}
    real_search, real_oracle = bench.exhaustive_search, OraclePlanner.plan

    def counted_search(*a, **k):
        counts["search"] += 1
        return real_search(*a, **k)

    def counted_oracle(self, request):
        counts["oracle"] += 1
        return real_oracle(self, request)

    monkeypatch.setattr(bench, "exhaustive_search", counted_search)
    monkeypatch.setattr(OraclePlanner, "plan", counted_oracle)
    monkeypatch.setattr(bench, "get_planner", lambda name: policy if name == "vlm" else get_planner(name))
    yield {
        "imgs": imgs,
        "combos": combos,
        "model": model,
        "policy": policy,
        "counts": counts,
        "out": tmp_path / "bench",
    }
    for name, *_ in BENCH_TOY_SPECS:
        registry._EXTRA_SPECS.pop(name, None)
    registry.get_tool.cache_clear()


def _bench_cfg(env, planners):
    from restoreagent.bench import BenchConfig

    return BenchConfig(
        images=str(env["imgs"]),
        out=str(env["out"]),
        samples=2,
        planners=planners,
        combos_file=str(env["combos"]),
        crop=32,
        metrics=("psnr", "ssim"),
    )


def test_bench_stepwise_ranks_the_kept_plan(bench_env):
    from restoreagent.bench import prepare_sample, run_bench, sample_plan
    from restoreagent.executor import execute
    from restoreagent.imageio import list_images
    from restoreagent.plan import parse_plan
    from restoreagent.scoring import Scorer
    from restoreagent.search import exhaustive_search

    cfg = _bench_cfg(bench_env, ("vlm_stepwise", "oracle"))
    result = run_bench(cfg, progress=False)
    rows = {(r["combo"], r["planner"]): r for r in result["rows"]}
    scorer = Scorer(("psnr", "ssim"))
    samples = sample_plan(cfg, list_images(cfg.images, recursive=False), [["noise", "jpeg"], ["noise"]])
    for sample in samples:
        clean, degraded, record = prepare_sample(sample, cfg.crop)
        search = exhaustive_search(degraded, clean, degradations=record["degradations"], scorer=scorer)
        row = rows[(" + ".join(record["degradations"]), "vlm_stepwise")]
        assert row["plan"] == KEPT_PLAN and row["mode"] == "stepwise"
        assert (row["planner_calls"], row["rollbacks"]) == (5, 1)
        assert [(s["tool"], s["kept"]) for s in row["steps"]] == [
            ("ag_offset", False),
            ("ag_smooth3", True),
            ("ag_smooth5", True),
        ]
        assert row["saw"] == ["noise", "jpeg"]
        assert row["plan_seconds"] <= row["run_seconds"]
        kept_out, _ = execute(parse_plan(KEPT_PLAN), degraded)
        assert row["metrics"] == pytest.approx(scorer(kept_out, clean))
        if record["degradations"] == ["noise", "jpeg"]:  # the kept plan is a candidate: ranked among them
            kept, first = search.find(parse_plan(KEPT_PLAN)), search.find(parse_plan(FIRST_PLAN))
            assert search.ranking_of_score(kept.balanced) != search.ranking_of_score(
                first.balanced
            )  # the test tells them apart
            assert row["in_candidates"] and row["degradations_correct"]
            assert row["balanced"] == pytest.approx(kept.balanced)
            assert row["ranking"] == pytest.approx(search.ranking_of_score(kept.balanced))
        else:  # it names a task the truth lacks: its output image scored in the candidates' frame
            assert not row["in_candidates"] and not row["degradations_correct"]
            assert row["balanced"] == pytest.approx(search.balanced_of(scorer(kept_out, clean)))
            assert row["ranking"] == pytest.approx(search.ranking_of_score(row["balanced"]))
    agg = result["summary"]["planners"]
    assert agg["vlm_stepwise"]["planner_calls_mean"] == 5 and agg["vlm_stepwise"]["rollbacks_mean"] == 1
    assert agg["vlm_stepwise"]["degradations_correct"] == 0.5
    assert agg["oracle"]["planner_calls_mean"] == 1 and agg["oracle"]["rollbacks_mean"] == 0
    md = (bench_env["out"] / "results.md").read_text()
    assert "| planner calls / image | rollbacks / image |" in md
    assert "| 5.00 | 1.00 |" in md.split("| vlm_stepwise |", 1)[1].splitlines()[0]


def test_bench_adds_vlm_stepwise_to_an_existing_folder_without_recomputing(bench_env):
    from restoreagent.bench import run_bench

    counts, policy = bench_env["counts"], bench_env["policy"]
    first = run_bench(_bench_cfg(bench_env, ("oracle",)), progress=False)
    assert (counts["search"], counts["oracle"], policy.calls) == (2, 2, 0)
    both = run_bench(_bench_cfg(bench_env, ("oracle", "vlm_stepwise")), progress=False)
    assert (counts["search"], counts["oracle"], policy.calls) == (2, 2, 10)  # only the new planner ran
    assert [r for r in both["rows"] if r["planner"] == "oracle"] == first["rows"]
    again = run_bench(_bench_cfg(bench_env, ("oracle", "vlm_stepwise")), progress=False)
    assert (counts["search"], counts["oracle"], policy.calls) == (2, 2, 10)
    assert again["rows"] == both["rows"]
    # a changed model (the planner's files) invalidates its rows, and only its rows
    (bench_env["model"] / "weights.bin").write_bytes(b"v2")
    run_bench(_bench_cfg(bench_env, ("oracle", "vlm_stepwise")), progress=False)
    assert (counts["search"], counts["oracle"], policy.calls) == (2, 2, 20)


def test_cli_bench_accepts_vlm_stepwise(bench_env, capsys):
    from restoreagent.cli import main

    e = bench_env
    args = [
        "bench",
        "--images",
        str(e["imgs"]),
        "--samples",
        "2",
        "--crop",
        "32",
        "--combos",
        str(e["combos"]),
        "--metrics",
        "psnr,ssim",
        "--out",
        str(e["out"]),
    ]
    assert main([*args, "--planners", "oracle,vlm_stepwise"]) == 0
    summary = json.loads((e["out"] / "results.json").read_text())["summary"]["planners"]
    assert set(summary) == {"oracle", "vlm_stepwise"} and summary["vlm_stepwise"]["rollbacks_mean"] == 1
    capsys.readouterr()
    assert main([*args, "--planners", "oracle,fixed_stepwise"]) == 2
    err = capsys.readouterr().err
    assert "unknown planner 'fixed_stepwise'" in err and "vlm_stepwise" in err


def test_bench_job_accepts_vlm_stepwise(bench_env, capsys):
    """The bench job from key=value overrides (`restoreagent job bench`): the same config as `restoreagent bench`."""
    from restoreagent.cli import main

    e = bench_env

    def run(planners):
        return main(["job", "bench", f"images={e['imgs']}", f"out={e['out']}", "samples=2", "crop=32",
                     f"combos_file={e['combos']}", "metrics=[psnr,ssim]", f"planners={planners}"])

    assert run("[oracle,vlm_stepwise]") == 0
    result = json.loads((e["out"] / "results.json").read_text())
    assert {r["planner"] for r in result["rows"]} == {"oracle", "vlm_stepwise"}
    assert {r["plan"] for r in result["rows"] if r["planner"] == "vlm_stepwise"} == {KEPT_PLAN}
    capsys.readouterr()
    assert run("[vlm_stepwize]") == 2
    assert "unknown planner 'vlm_stepwize'" in capsys.readouterr().err


def test_bench_benchmarks_a_planner_from_another_folder(bench_env, monkeypatch, tmp_path):
    """``vlm@FOLDER`` loads the VLM planner saved in FOLDER, beside the shipped one, in one run."""
    from restoreagent import bench
    from restoreagent.bench import check_planner_names, run_bench
    from restoreagent.errors import RestoreAgentError, UnknownNameError

    folder = tmp_path / "candidate"
    folder.mkdir()
    loads = []

    def fake_get_planner(name, **kw):
        loads.append((name, kw))
        return bench_env["policy"]

    monkeypatch.setattr(bench, "get_planner", fake_get_planner)
    names = ("vlm_stepwise", f"vlm_stepwise@{folder}", f"vlm@{folder}")
    result = run_bench(_bench_cfg(bench_env, names), progress=False)
    assert loads == [("vlm", {}), ("vlm", {"model": str(folder)})]  # one load per folder, shared by both modes
    summary = result["summary"]["planners"]
    assert summary[f"vlm_stepwise@{folder}"]["rollbacks_mean"] == 1  # ran the stepwise loop
    assert summary[f"vlm@{folder}"]["planner_calls_mean"] == 1  # one-shot
    with pytest.raises(RestoreAgentError, match="does not exist"):
        check_planner_names([f"vlm@{tmp_path / 'missing'}"])
    with pytest.raises(RestoreAgentError, match="take a model folder"):
        check_planner_names([f"random@{folder}"])
    with pytest.raises(UnknownNameError):
        check_planner_names([f"llava@{folder}"])


def test_bench_search_cache_follows_the_tools_of_the_samples_tasks(bench_env, monkeypatch):
    """A tool joining another task keeps the cached searches; one joining a searched task redoes them."""
    from restoreagent.bench import run_bench

    counts = bench_env["counts"]
    run_bench(_bench_cfg(bench_env, ("oracle",)), progress=False)
    assert counts["search"] == 2
    tools = {**BENCH_TOY, "dehaze": ["some_dehazer"]}
    monkeypatch.setattr("restoreagent.search.tools_for_task", lambda task: list(tools.get(task, [])))
    run_bench(_bench_cfg(bench_env, ("oracle",)), progress=False)
    assert counts["search"] == 2  # no sample needs dehaze
    tools["denoise"] = [*tools["denoise"], "ag_offset"]
    run_bench(_bench_cfg(bench_env, ("oracle",)), progress=False)
    assert counts["search"] == 4  # both samples denoise: their searches are redone
