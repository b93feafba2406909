"""Snow: an extension degradation (``snow``) and task (``desnow``) that changes nothing for the
eight core degradations: same bytes for the same seed, same random pools, same recipes."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from restoreagent.cli import main
from restoreagent.degradations import (
    PARAM_LIMITS,
    PARAM_RANGES,
    apply_degradation,
    degrade,
    sample_combination,
)
from restoreagent.degradations.chain import MAX_K
from restoreagent.tasks import (
    CORE_DEGRADATIONS,
    CORE_TASKS,
    DEGRADATIONS,
    PHYSICAL_ORDER,
    TASKS,
    physical_order,
    physical_task_order,
    tasks_for,
)

ORIGINAL = ("haze", "rain", "low_light", "motion_blur", "defocus_blur", "low_resolution", "noise", "jpeg")
SNOW = {"density": 0.005, "size": 1.75, "angle": 95.0, "intensity": 0.7}


def psnr(a, b) -> float:
    return 10.0 * np.log10(1.0 / float(np.mean((np.asarray(a, np.float64) - b) ** 2)))


# ------------------------------------------------------------------ vocabulary and order


def test_snow_is_appended_and_the_core_is_unchanged():
    assert DEGRADATIONS[:8] == ORIGINAL == CORE_DEGRADATIONS and DEGRADATIONS[8] == "snow"
    assert TASKS[:8] == CORE_TASKS and TASKS[8] == "desnow"
    assert MAX_K == 8
    assert set(PARAM_RANGES) == set(PARAM_LIMITS) == set(DEGRADATIONS)


def test_physical_order_places_snow_after_rain():
    assert PHYSICAL_ORDER == ("haze", "rain", "snow") + ORIGINAL[2:]
    assert physical_order(["jpeg", "snow", "low_light", "rain", "haze", "noise"]) == [
        "haze", "rain", "snow", "low_light", "noise", "jpeg"
    ]
    assert tasks_for(["noise", "snow", "rain"]) == ["derain", "desnow", "denoise"]
    assert physical_task_order(["brighten", "desnow", "dehaze"]) == ["dehaze", "desnow", "brighten"]
    # the core keeps its old order: physical order of the core == registration order
    assert physical_order(reversed(ORIGINAL)) == list(ORIGINAL)
    _, rec = degrade(np.full((16, 16, 3), 0.5, np.float32), "jpeg,snow,low_light,rain", seed=1)
    assert rec["degradations"] == ["rain", "snow", "low_light", "jpeg"]


# Computed with the code before snow existed: degrade(astronaut_small, k=k, seed=s), sha256 of the
# bytes (first 16 hex digits) and the degradations drawn.
BEFORE_SNOW = [
    (1, 0, "b5702edd4a12800f", ["noise"]),
    (1, 123, "cc38bda098d455fe", ["haze"]),
    (3, 0, "f2882b44f0cf7f4a", ["defocus_blur", "low_resolution", "jpeg"]),
    (3, 1, "0b23f1066407f001", ["low_light", "motion_blur", "noise"]),
    (3, 2, "c62421dd630eeda1", ["haze", "rain", "low_resolution"]),
    (3, 7, "628f369e24849071", ["defocus_blur", "low_resolution", "jpeg"]),
    (3, 123, "57af6ecd8e6a4bb5", ["haze", "defocus_blur", "jpeg"]),
    (5, 1, "3cd82f5ca47c284f", ["haze", "rain", "low_light", "defocus_blur", "noise"]),
    (5, 2, "42271de783a40b17", ["haze", "rain", "low_light", "motion_blur", "jpeg"]),
]


@pytest.mark.parametrize(("k", "seed", "digest", "names"), BEFORE_SNOW)
def test_random_chains_give_the_same_bytes_as_before(k, seed, digest, names, astronaut_small):
    out, rec = degrade(astronaut_small, k=k, seed=seed)
    assert rec["degradations"] == names
    assert hashlib.sha256(out.tobytes()).hexdigest()[:16] == digest


def test_sample_combination_draws_as_before():
    rng = np.random.default_rng(5)
    assert [sample_combination(rng, 3) for _ in range(4)] == [
        ["haze", "defocus_blur", "low_resolution"],
        ["low_light", "motion_blur", "defocus_blur"],
        ["rain", "low_light", "defocus_blur"],
        ["haze", "noise", "jpeg"],
    ]


def test_adding_snow_to_a_chain_changes_nothing_else(astronaut_small):
    base, rec = degrade(astronaut_small, "haze,noise", seed=4)
    with_snow, rec2 = degrade(astronaut_small, "haze,snow:intensity=0,noise", seed=4)
    assert [s for s in rec2["chain"] if s["name"] != "snow"] == rec["chain"]
    assert with_snow.tobytes() == base.tobytes()  # intensity 0 is the identity


# ------------------------------------------------------------------ random pools: core only


def test_random_pools_never_draw_snow(tmp_path):
    from restoreagent.bench import BenchConfig, sample_plan

    rng = np.random.default_rng(0)
    for k in range(1, MAX_K + 1):
        for _ in range(40):
            assert "snow" not in sample_combination(rng, k)
    assert sorted(sample_combination(rng, 8)) == sorted(ORIGINAL)
    cfg = BenchConfig(images="x", out="y", samples=300, max_degradations=8)
    assert not any("snow" in s["combo"] for s in sample_plan(cfg, [Path("a.png")], None))


def test_labeler_uses_snow_only_when_named(tmp_path):
    from restoreagent.imageio import save_image
    from restoreagent.labeling.labeler import LabelConfig, plan_labels

    d = tmp_path / "imgs"
    d.mkdir()
    save_image(np.full((32, 32, 3), 0.5, np.float32), d / "a.png")
    toolset = {"denoise": ["dct_mid"], "desnow": ["desnow_light"], "dejpeg": ["dejpeg_mild"]}

    def allowed(**kw):
        cfg = LabelConfig(images=(str(d),), out=str(tmp_path / "out"), samples=4, toolset=toolset, **kw)
        return plan_labels(cfg).identity["degradations"]

    assert allowed() == ["noise", "jpeg"]  # desnow has a tool, but snow is not drawn by default
    assert allowed(degradations=("jpeg", "snow")) == ["snow", "jpeg"]
    combos = tmp_path / "c.txt"
    combos.write_text("snow + noise\n")
    cfg = LabelConfig(images=(str(d),), out=str(tmp_path / "o2"), samples=2, toolset=toolset, combos_file=str(combos))
    assert plan_labels(cfg).identity["combos"] == [["snow", "noise"]]


def test_snow_combos_file_parses():
    from restoreagent.bench import parse_combos

    root = Path(__file__).resolve().parent.parent
    combos = parse_combos((root / "configs" / "bench" / "snow_combos.txt").read_text())
    assert len(combos) == 6 and all("snow" in c for c in combos)
    assert ["snow"] in combos and ["haze", "snow"] in combos and ["snow", "noise", "jpeg"] in combos


# ------------------------------------------------------------------ the snow operator


def test_snow_op_contract(astronaut_small):
    a = apply_degradation(astronaut_small, "snow", SNOW, np.random.default_rng(3))
    b = apply_degradation(astronaut_small, "snow", SNOW, np.random.default_rng(3))
    c = apply_degradation(astronaut_small, "snow", SNOW, np.random.default_rng(4))
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    assert a.shape == astronaut_small.shape and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert a.mean() > astronaut_small.mean() + 0.03  # snow whitens
    assert np.all(a >= np.minimum(astronaut_small, 0.96) - 1e-6)  # ... everywhere below the snow white
    assert 15.0 < psnr(a, astronaut_small) < 30.0
    for shape in ((8, 8, 3), (1, 1, 3), (5, 40, 3), (37, 11, 3)):
        img = np.random.default_rng(0).random(shape, dtype=np.float32)
        out = apply_degradation(img, "snow", {**SNOW, "size": 2.5, "density": 0.008})
        assert out.shape == shape and np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_snow_flakes_are_bright_blobs_and_the_veil_is_uniform():
    grey = np.full((96, 128, 3), 0.3, np.float32)
    veil_only = apply_degradation(grey, "snow", {**SNOW, "density": 0.0})
    assert np.ptp(veil_only) < 1e-6 and abs(float(veil_only[0, 0, 0]) - (0.3 + 0.12 * 0.7 * (0.96 - 0.3))) < 1e-5
    out = apply_degradation(grey, "snow", SNOW, np.random.default_rng(1))
    assert np.abs(out - out[..., :1]).max() < 1e-6  # blended toward grey-white: stays colourless
    flakes = out[..., 0] > veil_only[0, 0, 0] + 0.05
    assert 0.01 < flakes.mean() < 0.3  # sparse flakes, not a uniform brightening
    assert out.max() > 0.7  # some flakes nearly opaque


def test_snow_severity_and_speed():
    rng = np.random.default_rng(0)
    img = rng.random((512, 512, 3), dtype=np.float32) * 0.5
    scores = [psnr(apply_degradation(img, "snow", {**SNOW, "density": d}, np.random.default_rng(2)), img) for d in (0.002, 0.005, 0.008)]
    assert scores[0] > scores[1] > scores[2]
    times = []
    for _ in range(3):
        t = time.perf_counter()
        apply_degradation(img, "snow", {"density": 0.008, "size": 2.5, "angle": 110.0, "intensity": 0.9}, rng)
        times.append(time.perf_counter() - t)
    assert min(times) < 0.1  # about 10 ms on a quiet 2-core CPU; loose against a busy machine


# ------------------------------------------------------------------ the desnow tools


@pytest.mark.parametrize("name", ["desnow_light", "desnow_heavy"])
def test_desnow_restores_a_snowy_photo(name, astronaut_small):
    from restoreagent.tools import get_tool

    tool = get_tool(name)
    assert tool.task == "desnow"
    for seed, params in enumerate([{**SNOW, "size": 1.2, "intensity": 0.6}, {**SNOW, "size": 2.3, "density": 0.007}]):
        snowy = apply_degradation(astronaut_small, "snow", params, np.random.default_rng(seed))
        assert psnr(tool(snowy), astronaut_small) > psnr(snowy, astronaut_small) + 2.0
    assert psnr(tool(astronaut_small), astronaut_small) > 28.0  # limited harm without snow


def test_desnow_catalogue_and_recipes(monkeypatch):
    from restoreagent.planners.baselines import fixed_recipe, severity_matched_plan
    from restoreagent.tools.registry import spec, tools_for_task

    monkeypatch.delenv("RESTOREAGENT_ALL_TOOLS", raising=False)
    # the learned tool beats both classical variants at every severity: they are reserve tools
    assert spec("unet_desnow").candidate and not spec("desnow_light").candidate and not spec("desnow_heavy").candidate
    assert tools_for_task("desnow") == ["unet_desnow"]
    steps = fixed_recipe({"dehaze", "desnow", "brighten", "dejpeg"})  # reverse physical order
    assert [t for t, _ in steps] == ["dejpeg", "brighten", "desnow", "dehaze"] and steps[2][1] == "unet_desnow"
    rec = {"chain": [{"name": "snow", "params": {**SNOW, "size": 2.4}}, {"name": "noise", "params": {"sigma": 20.0}}]}
    assert severity_matched_plan(rec).tasks == ("denoise", "desnow")
    assert severity_matched_plan(rec).steps[1].tool == "unet_desnow"
    monkeypatch.setenv("RESTOREAGENT_ALL_TOOLS", "1")  # the classical variants by severity, when allowed
    assert severity_matched_plan(rec).steps[1].tool == "unet_desnow"  # listed first: covers the range


def test_search_orders_desnow_physically(astronaut_small):
    from restoreagent.search import exhaustive_search

    snowy, _ = degrade(astronaut_small[:48, :48], "snow,noise:sigma=10", seed=0)
    res = exhaustive_search(snowy, astronaut_small[:48, :48], degradations=["noise", "snow"],
                            toolset={"desnow": ["desnow_light"], "denoise": ["dct_low"]})
    assert res.tasks == ("desnow", "denoise") and len(res.candidates) == 2


# ------------------------------------------------------------------ command line


def test_cli_degrades_with_snow_and_lists_the_tools(tmp_path, astronaut_png, capsys):
    out = tmp_path / "snowy.png"
    assert main(["degrade", str(astronaut_png), "-o", str(out), "--chain", "snow:density=0.006,size=2", "--seed", "2"]) == 0
    rec = json.loads((tmp_path / "snowy.png.json").read_text())
    assert rec["degradations"] == ["snow"] and rec["chain"][0]["params"]["density"] == 0.006
    from restoreagent.imageio import load_image

    assert load_image(out).mean() > load_image(astronaut_png).mean()
    capsys.readouterr()
    assert main(["tools", "--json", "--task", "desnow"]) == 0
    tools = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert set(tools) == {"unet_desnow", "desnow_light", "desnow_heavy"} and all(t["available"] for t in tools.values())


# ------------------------------------------------------------------ planners


def test_grammar_reports_snow_in_physical_order():
    from restoreagent.planners.vlm.grammar import AnswerGrammar, plannable_degradations

    tools = {"derain": ["derain_heavy"], "desnow": ["desnow_light"], "brighten": ["gamma_mild"]}
    g = AnswerGrammar(tools)
    assert g.accepts("saw: rain, snow, low_light | plan: brighten:gamma_mild, desnow:desnow_light")
    assert not g.accepts("saw: snow, rain | plan: none")
    assert plannable_degradations(tools) == ["rain", "snow", "low_light"]


def test_shipped_planner_names_snow_and_only_installed_words():
    """The shipped planner can name snow and desnow:unet_desnow (built with the whole catalogue's words
    since the perception rebuild; before, through the snow extension); the constraint still allows
    only words of installed tools."""
    from transformers import AutoTokenizer

    from restoreagent.planners.vlm.build_default import default_planner_dir, read_meta
    from restoreagent.planners.vlm.extend import EXTENSIONS
    from restoreagent.planners.vlm.grammar import (
        AnswerGrammar,
        TokenConstraint,
        installed_tools,
        token_strings,
    )

    meta = read_meta(default_planner_dir())
    assert "desnow_light" in meta["tools_at_build"]["desnow"] or any(
        " snow" in rec["words"] for rec in meta.get(EXTENSIONS, [])
    )
    tok = AutoTokenizer.from_pretrained(default_planner_dir())
    g = AnswerGrammar(installed_tools())
    con = TokenConstraint(g, token_strings(tok), [tok.eos_token_id])
    assert "desnow:unet_desnow" not in con.unnameable_tools()
    allowed_saw = {con.strings[i] for i in con.allowed(g.advance(g.start(), "saw:")) if i != tok.eos_token_id}
    assert " snow" in allowed_saw
    state = g.advance(g.start(), "saw: snow | plan:")
    allowed = {con.strings[i] for i in con.allowed(state) if i != tok.eos_token_id}
    assert " desnow:unet_desnow" in allowed
    # reserve tools are not installed for planning: never offered, though the vocabulary has them
    assert " desnow:desnow_light" not in allowed


def test_answer_metrics_stay_comparable():
    from restoreagent.planners.vlm.evaluation import answer_metrics

    m = answer_metrics(["saw: noise | plan: none"], ["saw: noise, jpeg | plan: none"])
    assert "acc/snow" not in m and m["saw_label_acc"] == pytest.approx(7 / 8)
    m = answer_metrics(["saw: snow | plan: none"], ["saw: snow | plan: none"])
    assert m["acc/snow"] == 1.0 and m["saw_label_acc"] == 1.0


# ------------------------------------------------------------------ the learned tool's config


def test_unet_desnow_config_trains(tmp_path):
    from skimage import data

    from restoreagent.config import load
    from restoreagent.imageio import save_image
    from restoreagent.jobs import smoke_config
    from restoreagent.jobs.train_tool import ToolTrainConfig
    from restoreagent.tools.learned import build_learned_tool
    from restoreagent.tools.learned.training import train_tool

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "chelsea"):
        save_image(getattr(data, name)()[:64, :64, :3].astype(np.float32) / 255, photos / f"{name}.png")
    overrides = ["tool=unet_desnow", f"data.images=[{photos}]", f"output_dir={tmp_path / 'run'}"]
    cfg = load(ToolTrainConfig, [smoke_config("train-tool")], overrides)  # the job's smoke settings, another tool
    summary = train_tool(cfg)
    assert summary["task"] == "desnow" and summary["degradation"] == "snow"
    assert [g["tool"] for g in summary["guides"]] == ["desnow_light"]
    fn = build_learned_tool(summary["weights"])
    assert fn(np.full((20, 24, 3), 0.5, np.float32)).shape == (20, 24, 3)
