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


# ---- run on folders, alternatives, and the Agent's flags (issue 13) -----------------------------


def test_run_folder_keeps_paths_reports_resumes_and_goes_on_after_a_bad_file(tmp_path, astronaut_small, capsys):
    from restoreagent.imageio import save_image

    src = tmp_path / "photos"
    save_image(astronaut_small, src / "a.png")
    save_image(astronaut_small[:64], src / "trip" / "b.jpg")
    (src / "trip" / "broken.png").write_text("not an image")
    out = src / "restored"  # inside the input folder: its files are never taken as inputs
    args = ["run", str(src), "-o", str(out), "--plan", "denoise:dct_low", "--json"]
    assert main(args) == 2  # the broken file failed, the others were restored
    captured = capsys.readouterr()
    assert captured.err.count("restoreagent: error:") == 1 and "broken.png" in captured.err
    summary = json.loads(captured.out)
    assert (summary["restored"], summary["failed"], summary["done_before"]) == (2, 1, 0)
    assert (out / "a.png").is_file() and (out / "trip" / "b.jpg").is_file()  # relative paths and formats kept
    report = json.loads((out / "trip" / "b.jpg.json").read_text())
    assert report["input"] == str(src / "trip" / "b.jpg") and report["plan"]["text"] == "denoise:dct_low"
    assert load_image(out / "trip" / "b.jpg").shape == (64, 128, 3)
    assert json.loads((out / "summary.json").read_text())["images"] == 3
    assert (out / "summary.csv").read_text().splitlines()[0] == "input,output,status,plan,seconds,error"
    # a second run skips what is done; --overwrite redoes it
    before = (out / "a.png").stat().st_mtime_ns
    assert main(args) == 2
    summary = json.loads(capsys.readouterr().out)
    assert (summary["restored"], summary["done_before"], summary["images"]) == (0, 2, 3)
    assert (out / "a.png").stat().st_mtime_ns == before
    assert main([*args, "--overwrite", "--ext", "png"]) == 2
    summary = json.loads(capsys.readouterr().out)
    assert summary["restored"] == 2 and (out / "trip" / "b.png").is_file()


def test_run_several_files_to_a_folder_and_flag_errors(tmp_path, astronaut_png, capsys):
    other = tmp_path / "other.png"
    other.write_bytes(astronaut_png.read_bytes())
    assert main(["run", str(astronaut_png), str(other), "-o", str(tmp_path / "out"), "--plan", "none"]) == 0
    assert (tmp_path / "out" / "astronaut.png").is_file() and (tmp_path / "out" / "other.png").is_file()
    capsys.readouterr()
    for extra, needle in (
        (["--plan", "none", "--pick", "1"], "--pick needs --alternatives"),
        (["--auto", "--alternatives", "2"], "--alternatives takes one input image"),
        (["--plan", "none", "--tile", "-3"], "--tile must be 0"),
        (["--plan", "none", "--jpeg-quality", "0"], "--jpeg-quality must be between 1 and 100"),
    ):
        assert main(["run", str(astronaut_png), str(other), "-o", str(tmp_path / "o2"), *extra]) == 2
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_plan_and_detect_take_the_agent_flags(astronaut_png, capsys):
    assert main(["plan", str(astronaut_png), "--planner", "fixed", "--device", "cpu", "--tile", "0", "--json"]) == 0
    assert "steps" in json.loads(capsys.readouterr().out)
    assert main(["detect", str(astronaut_png), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["input"] == str(astronaut_png)
    assert main(["plan", str(astronaut_png), "--planner", "no_such_planner"]) == 2
    assert "unknown planner 'no_such_planner'" in capsys.readouterr().err


def test_run_alternatives_contact_sheet_and_pick(tmp_path, astronaut_small, capsys):
    from restoreagent.degradations import degrade
    from restoreagent.imageio import save_image

    bad, _ = degrade(astronaut_small, chain="noise:sigma=25,jpeg:quality=20", seed=0)
    src = save_image(bad, tmp_path / "bad.png")
    out = tmp_path / "out.png"
    assert main(["run", str(src), "-o", str(out), "--auto", "--alternatives", "3", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    plans = [a["plan"]["text"] for a in report["alternatives"]]
    assert len(plans) == 3 and len(set(plans)) == 3
    assert (tmp_path / "out.alternatives.png").is_file() and all((tmp_path / f"out.alt{i}.png").is_file() for i in (1, 2, 3))
    np.testing.assert_array_equal(load_image(out), load_image(tmp_path / "out.alt1.png"))
    picked = tmp_path / "picked.png"
    assert main(["run", str(src), "-o", str(picked), "--auto", "--alternatives", "3", "--pick", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plan"]["text"] == plans[1]
    np.testing.assert_array_equal(load_image(picked), load_image(tmp_path / "out.alt2.png"))
    assert not (tmp_path / "picked.alt1.png").exists()  # --pick keeps one
