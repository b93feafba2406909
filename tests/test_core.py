"""Plans, scoring arithmetic, the prefix-tree search and the baseline planners."""

import math

import numpy as np
import pytest

from restoreagent.dialogue import Answer, History, parse_answer, prompt
from restoreagent.errors import PlanError
from restoreagent.plan import Plan, Step, parse_plan, plan_from_json
from restoreagent.scoring import METRICS, Scorer, ZStats, balanced_scores, ranking_percent
from restoreagent.search import count_pipelines, count_tree_calls, exhaustive_search, naive_search
from restoreagent.tools.registry import ToolSpec, register

TOY = {
    "denoise": ["toy_gain_up", "toy_smooth3"],
    "dejpeg": ["toy_gain_down", "toy_smooth5", "toy_offset"],
    "dehaze": ["toy_offset_neg", "toy_gain_up2"],
    "derain": ["toy_smooth7", "toy_gain_flat"],
}


@pytest.fixture(scope="module", autouse=True)
def toy_tools():
    entries = [
        ("toy_gain_up", "denoise", "toytools:gain", {"g": 1.1}),
        ("toy_smooth3", "denoise", "toytools:smooth", {"k": 3}),
        ("toy_gain_down", "dejpeg", "toytools:gain", {"g": 0.9}),
        ("toy_smooth5", "dejpeg", "toytools:smooth", {"k": 5}),
        ("toy_offset", "dejpeg", "toytools:offset", {"b": 0.03}),
        ("toy_offset_neg", "dehaze", "toytools:offset", {"b": -0.05}),
        ("toy_gain_up2", "dehaze", "toytools:gain", {"g": 1.2}),
        ("toy_smooth7", "derain", "toytools:smooth", {"k": 7}),
        ("toy_gain_flat", "derain", "toytools:gain", {"g": 1.0}),
    ]
    for name, task, fn, params in entries:
        register(ToolSpec(name=name, task=task, kind="classical", description="test tool", function=fn, params=params))


# ---- plans ------------------------------------------------------------------------------------


def test_plan_text_json_round_trip():
    plan = parse_plan("denoise:toy_smooth3, dejpeg:toy_offset")
    assert plan.text() == "denoise:toy_smooth3, dejpeg:toy_offset"
    assert plan_from_json(plan.to_json()) == plan
    assert parse_plan("none") == Plan() and Plan().text() == "none"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("deblur:x", "unknown task 'deblur'; tasks: dehaze"),
        ("denoise:nope", "unknown tool 'nope' for denoise; tools for denoise:"),
        ("denoise:toy_offset", "unknown tool 'toy_offset' for denoise"),  # a dejpeg tool under denoise
        ("denoise", "is not 'task:tool'"),
        ("denoise:toy_smooth3, denoise:toy_gain_up", "appears twice"),
    ],
)
def test_plan_errors_say_what_exists(text, needle):
    with pytest.raises(PlanError, match=None) as e:
        parse_plan(text)
    assert needle in str(e.value)
    if "tools for denoise:" in needle:
        assert "toy_smooth3" in str(e.value)


def test_dialogue_round_trip():
    ans = Answer(("jpeg", "noise"), Plan.of([("denoise", "toy_smooth3"), ("dejpeg", "toy_offset")]))
    text = ans.text()
    assert text == "saw: noise, jpeg | plan: denoise:toy_smooth3, dejpeg:toy_offset"
    assert parse_answer(text) == Answer(("noise", "jpeg"), ans.plan)
    assert parse_answer("rollback").rollback
    assert parse_answer("saw: none | plan: none").stop
    assert prompt() == "How to enhance the quality of this image?"
    h = History(done=(Step("denoise", "toy_smooth3"),), last_step=Step("dejpeg", "toy_offset"))
    assert prompt(h).endswith("Execution history: done: denoise:toy_smooth3; last: dejpeg:toy_offset.")
    with pytest.raises(PlanError):
        parse_answer("saw: fog | plan: none")


# ---- scoring ----------------------------------------------------------------------------------


def test_balanced_score_is_sum_of_signed_zscores():
    rows = [{"psnr": 20.0, "lpips": 0.5}, {"psnr": 30.0, "lpips": 0.1}, {"psnr": 25.0, "lpips": 0.3}]
    got = balanced_scores(rows, ["psnr", "lpips"])
    p = np.array([20, 30, 25.0])
    lp = np.array([0.5, 0.1, 0.3])
    want = (p - p.mean()) / p.std() - (lp - lp.mean()) / lp.std()  # lpips is lower-is-better
    np.testing.assert_allclose(got, want)
    assert METRICS["lpips"].higher_is_better is False
    # a metric with zero spread contributes nothing
    assert balanced_scores([{"psnr": 1.0}, {"psnr": 1.0}], ["psnr"]) == [0.0, 0.0]
    assert ZStats.of(rows, ["psnr", "lpips"]).balanced(rows[1]) == pytest.approx(got[1])


def test_ranking_arithmetic():
    scores = [3.0, 2.0, 2.0, 1.0, 0.0]
    assert ranking_percent(3.0, scores) == 0.0  # the best: nothing is strictly better
    assert ranking_percent(2.0, scores) == 20.0  # ties do not count against you
    assert ranking_percent(0.0, scores) == 80.0  # the worst of five: four are better
    assert ranking_percent(10.0, scores) == 0.0


def test_scorer_psnr_matches_formula(astronaut_small):
    noisy = np.clip(astronaut_small + 0.05, 0, 1).astype(np.float32)
    m = Scorer(["psnr", "ssim"])(noisy, astronaut_small)
    mse = np.mean((noisy.astype(np.float64) - astronaut_small) ** 2)
    assert m["psnr"] == pytest.approx(10 * math.log10(1 / mse), abs=0.05)
    assert 0 < m["ssim"] < 1
    assert Scorer(["psnr", "ssim"])(astronaut_small, astronaut_small)["ssim"] == pytest.approx(1.0, abs=1e-4)


def test_fast_metrics_agree_with_pyiqa(astronaut_small):
    """The search's own PSNR/SSIM are pyiqa's definitions (to 1e-6), on odd sizes and strong damage."""
    rng = np.random.default_rng(0)
    ref = astronaut_small[:61, :47]
    fast, slow = Scorer(["psnr", "ssim"]), Scorer(["psnr", "ssim"], fast=False)
    for sigma in (0.01, 0.1, 0.4):
        x = np.clip(ref + rng.normal(0, sigma, ref.shape), 0, 1).astype(np.float32)
        a, b = fast(x, ref), slow(x, ref)
        assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-5)
        assert a["ssim"] == pytest.approx(b["ssim"], abs=1e-6)  # pyiqa rounds its 2-D window to float32


def test_scorer_notices_a_reused_reference_buffer(astronaut_small):
    """The cached reference statistics follow the reference's content, not its identity."""
    ref = astronaut_small.copy()
    x = np.clip(astronaut_small * 0.9, 0, 1).astype(np.float32)
    scorer = Scorer(["ssim"])
    first = scorer(x, ref)["ssim"]
    ref *= 0.5  # same buffer, new content
    assert scorer(x, ref)["ssim"] == pytest.approx(Scorer(["ssim"], fast=False)(x, ref)["ssim"], abs=1e-6)
    assert scorer(x, ref)["ssim"] != pytest.approx(first, abs=1e-3)


# ---- search -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_prefix_tree_equals_naive_enumeration(astronaut_small, n):
    tasks = list(TOY)[:n]
    toolset = {t: TOY[t] for t in tasks}
    degraded = np.clip(astronaut_small * 0.8 + 0.05, 0, 1).astype(np.float32)
    scorer = Scorer(["psnr", "ssim"])
    res = exhaustive_search(degraded, astronaut_small, tasks=tasks, toolset=toolset, scorer=scorer)
    naive = naive_search(degraded, astronaut_small, tasks, toolset, scorer)
    assert len(res.candidates) == len(naive) == count_pipelines(toolset)
    for c in res.candidates:
        assert c.metrics == naive[c.plan.text()]  # bit-identical: the same tool calls on the same inputs
    assert res.tool_calls == count_tree_calls(toolset)
    assert res.naive_tool_calls == count_pipelines(toolset) * n
    if n >= 2:
        assert res.tool_calls < res.naive_tool_calls
    scores = [c.balanced for c in res.candidates]
    assert scores == sorted(scores, reverse=True)
    assert res.ranking_of_score(res.best.balanced) == 0.0


def test_tree_call_counts_by_hand():
    # 2 tasks with 2 and 3 tools: level 1 = 2+3, level 2 = 2*3 + 3*2
    assert count_tree_calls({"a": [1, 2], "b": [1, 2, 3]}) == 5 + 12
    assert count_pipelines({"a": [1, 2], "b": [1, 2, 3]}) == 2 * 6
    sizes = {t: list(range(3)) for t in "abcd"}
    assert count_pipelines(sizes) == 24 * 81  # RestoreAgent-sized example
    assert count_tree_calls(sizes) == 12 + 108 + 648 + 1944


def test_search_records_internal_nodes(astronaut_small):
    toolset = {t: TOY[t] for t in ["denoise", "dejpeg"]}
    res = exhaustive_search(astronaut_small, astronaut_small, tasks=list(toolset), toolset=toolset, scorer=Scorer(["psnr"]), record_nodes=True)
    # root + one node per first step (2 + 3)
    assert len(res.nodes) == 1 + 5
    assert res.nodes[0].steps == () and res.nodes[0].metrics["psnr"] > 60


def test_search_json_round_trip(astronaut_small):
    from restoreagent.search import search_result_from_json

    toolset = {t: TOY[t] for t in ["denoise", "dejpeg"]}
    res = exhaustive_search(astronaut_small * 0.9, astronaut_small, tasks=list(toolset), toolset=toolset, scorer=Scorer(["psnr", "ssim"]))
    back = search_result_from_json(res.to_json())
    assert [c.plan for c in back.candidates] == [c.plan for c in res.candidates]
    assert back.balanced_of(res.best.metrics) == pytest.approx(res.best.balanced)


# ---- baselines --------------------------------------------------------------------------------


def test_baseline_planners(astronaut_small, monkeypatch):
    from restoreagent.planners import PlanRequest, baselines, get_planner

    toolset = {t: TOY[t] for t in ["denoise", "dejpeg", "dehaze"]}
    monkeypatch.setattr(baselines, "tools_for_task", lambda t: toolset[t])
    degradations = ("haze", "noise", "jpeg")
    res = exhaustive_search(astronaut_small * 0.9, astronaut_small, tasks=list(toolset), toolset=toolset, scorer=Scorer(["psnr"]))
    req = PlanRequest(image=astronaut_small, degradations=degradations, search=res, seed=3)
    oracle = get_planner("oracle").plan(req)
    assert oracle.plan == res.best.plan
    fixed = get_planner("fixed").plan(req)
    assert fixed.plan.tasks == ("dejpeg", "denoise", "dehaze")  # reverse of the physical order
    plans = {get_planner("random").plan(PlanRequest(astronaut_small, degradations=degradations, seed=s)).plan for s in range(30)}
    assert len(plans) > 5  # random planner explores orders and tools
    assert all(res.find(p) is not None for p in plans)  # ...always inside the candidate set
    assert get_planner("random").plan(req) == get_planner("random").plan(req)  # seeded
