"""The installed command end to end, on an image scikit-image ships."""

import json
import subprocess
import sys

import numpy as np
import pytest

from restoreagent.cli import main
from restoreagent.imageio import load_image
from restoreagent.planners.baselines import severity_matched_plan


def run_cli(*args):
    """Run the real console entry point in a subprocess (exit code, one-line errors, no traceback)."""
    return subprocess.run([sys.executable, "-m", "restoreagent.cli", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_degrade_then_run_plan(tmp_path, astronaut_png, capsys):
    out = tmp_path / "deg.png"
    assert main(["degrade", str(astronaut_png), "-o", str(out), "--chain", "noise:sigma=25,jpeg:quality=20", "--seed", "3"]) == 0
    record = json.loads((tmp_path / "deg.png.json").read_text())
    assert [c["name"] for c in record["chain"]] == ["noise", "jpeg"]
    assert record["chain"][0]["params"]["sigma"] == 25 and record["seed"] == 3
    # each task's tool matched to the recorded severity (the first listed tool need not suit sigma 25)
    tool = {step.task: step.tool for step in severity_matched_plan(record)}
    plan = f"denoise:{tool['denoise']}, dejpeg:{tool['dejpeg']}"
    restored = tmp_path / "restored.png"
    steps = tmp_path / "steps"
    capsys.readouterr()
    assert main(["run", str(out), "-o", str(restored), "--plan", plan, "--json", "--save-steps", str(steps)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["task"] for s in report["steps"]] == ["denoise", "dejpeg"]
    assert all(s["seconds"] >= 0 for s in report["steps"])
    assert len(list(steps.glob("step*.png"))) == 3  # input + 2 steps
    clean, deg, rest = load_image(astronaut_png), load_image(out), load_image(restored)

    def psnr(a, b):
        return 10 * np.log10(1 / np.mean((a - b) ** 2))

    assert psnr(rest, clean) > psnr(deg, clean)  # the plan actually restores


def test_degrade_is_deterministic(tmp_path, astronaut_png):
    for name in ("a.png", "b.png"):
        assert main(["degrade", str(astronaut_png), "-o", str(tmp_path / name), "--random", "3", "--seed", "11"]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    ra, rb = (json.loads((tmp_path / f"{n}.png.json").read_text()) for n in "ab")
    assert ra["chain"] == rb["chain"] and len(ra["chain"]) == 3


def test_tools_json_lists_every_task(capsys):
    assert main(["tools", "--json"]) == 0
    tools = json.loads(capsys.readouterr().out)
    assert {"name", "task", "kind", "description"} <= set(tools[0])
    tasks = {t["task"] for t in tools if t["available"]}
    assert tasks == {"denoise", "motion_deblur", "defocus_deblur", "dejpeg", "dehaze", "derain", "brighten", "super_resolve", "desnow"}
    for task in tasks:
        assert sum(t["task"] == task for t in tools) >= 2


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "{missing}", "-o", "{out}", "--plan", "none"], "file not found"),
        (["run", "{text}", "-o", "{out}", "--plan", "none"], "not a readable image"),
        (["run", "{img}", "-o", "{img}", "--plan", "none"], "refusing to overwrite the input"),
        (["run", "{img}", "-o", "{out}", "--plan", "denoise:nope"], "unknown tool 'nope' for denoise; tools for denoise:"),
        (["degrade", "{img}", "-o", "{out}", "--chain", "fog"], "unknown degradation"),
        (["run", "{img}", "-o", "{tmp}/out.xyz", "--plan", "none"], "unknown output extension"),
    ],
)
def test_bad_input_one_line_error(tmp_path, astronaut_png, args, needle):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    before = astronaut_png.read_bytes()
    subs = {"{missing}": tmp_path / "nope.png", "{out}": tmp_path / "out.png", "{img}": astronaut_png, "{text}": text, "{tmp}": tmp_path}
    args = [str(subs.get(a, a)).replace("{tmp}", str(tmp_path)) for a in args]
    res = run_cli(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "out.png").exists()  # nothing written on failure
    assert astronaut_png.read_bytes() == before  # the input is never modified


def test_bench_end_to_end(tmp_path):
    from skimage import data

    from restoreagent.imageio import save_image

    imgs = tmp_path / "imgs"
    for i, arr in enumerate([data.astronaut(), data.chelsea(), data.coffee()]):
        save_image(arr[:160, :160].astype(np.float32) / 255, imgs / f"{i}.png")
    combos = tmp_path / "combos.txt"
    combos.write_text("noise + jpeg\n# comment\nlow_light + noise\n")
    out = tmp_path / "bench"
    res = run_cli("bench", "--images", imgs, "--samples", 2, "--crop", 48, "--combos", combos, "--out", out, "--planners", "random,fixed,oracle")
    assert res.returncode == 0, res.stderr
    result = json.loads((out / "results.json").read_text())
    summary = result["summary"]["planners"]
    assert summary["oracle"]["ranking_mean"] == 0.0
    assert set(summary) == {"random", "fixed", "oracle"}
    assert (out / "results.md").read_text().startswith("Samples: 2")
    assert {r["combo"] for r in result["rows"]} == {"noise + jpeg", "low_light + noise"}
    for r in result["rows"]:
        assert 0.0 <= r["ranking"] <= 100.0 and r["in_candidates"]
    # a second run reuses the cached searches and gives the same numbers
    res2 = run_cli("bench", "--images", imgs, "--samples", 2, "--crop", 48, "--combos", combos, "--out", out)
    assert res2.returncode == 0
    again = json.loads((out / "results.json").read_text())
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("plan_seconds", "search_seconds")} for r in rows]  # noqa: E731
    assert strip(again["rows"]) == strip(result["rows"])  # timings aside, identical
