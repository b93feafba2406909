"""``restoreagent assess`` and :func:`restoreagent.assess.assess_image`: offline scores of an image."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from restoreagent.assess import FULL_REFERENCE_PYIQA, assess_image
from restoreagent.cli import main
from restoreagent.errors import RestoreAgentError
from restoreagent.imageio import save_image


@pytest.fixture(scope="module")
def clean_and_noisy(astronaut_small):
    rng = np.random.default_rng(0)
    noisy = np.clip(astronaut_small + rng.normal(0, 25 / 255, astronaut_small.shape), 0, 1).astype(np.float32)
    return astronaut_small, noisy


@pytest.fixture(scope="module")
def reports(clean_and_noisy):
    clean, noisy = clean_and_noisy
    return assess_image(clean, detector=False), assess_image(noisy, ref=clean)


def test_no_reference_measures_see_the_noise(reports):
    clean, noisy = (r["no_reference"] for r in reports)
    assert noisy["noise"]["value"] > clean["noise"]["value"] + 10  # 25 grey levels were added
    assert noisy["noise"]["better"] == "lower"
    assert noisy["piqe"]["value"] is not None and noisy["piqe"]["better"] == "lower"
    assert 0 <= noisy["piqe"]["value"] <= 100  # (on a 128 px crop PIQE does not rank these two)
    assert clean["exposure"]["value"] == pytest.approx(abs(clean["brightness"]["value"] - 0.5), abs=1e-3)


def test_full_reference_metrics_agree_with_the_scorer(clean_and_noisy, reports):
    from restoreagent.scoring import Scorer

    clean, noisy = clean_and_noisy
    fr = reports[1]["full_reference"]
    assert set(fr) == set(FULL_REFERENCE_PYIQA)
    want = Scorer(("psnr", "ssim"), fast=False)(noisy, clean)  # pyiqa's own definitions
    assert fr["psnr"]["value"] == pytest.approx(want["psnr"], abs=1e-3)
    assert fr["ssim"]["value"] == pytest.approx(want["ssim"], abs=1e-3)
    for name in ("fsim", "vif", "gmsd"):  # run offline: no weight files
        assert fr[name]["value"] is not None, fr[name]
    assert fr["gmsd"]["better"] == "lower" and fr["fsim"]["better"] == "higher"
    same = assess_image(clean, ref=clean, detector=False)["full_reference"]
    assert same["ssim"]["value"] == pytest.approx(1.0) and same["gmsd"]["value"] == pytest.approx(0.0, abs=1e-6)


def test_measures_needing_files_are_unavailable_and_nothing_is_fetched(reports):
    import torch.hub

    cache = os.path.join(torch.hub.get_dir(), "pyiqa")
    before = sorted(os.listdir(cache)) if os.path.isdir(cache) else []
    nr, fr = reports[1]["no_reference"], reports[1]["full_reference"]
    for entry in (nr["niqe"], nr["brisque"], fr["lpips"], fr["dists"]):
        if entry["value"] is None:  # unless someone put the file in the cache
            assert "not downloaded" in entry["unavailable"]
    assert (sorted(os.listdir(cache)) if os.path.isdir(cache) else []) == before


def test_the_detector_sees_the_noise(reports):
    det = reports[1]["detector"]
    assert "noise" in det["degradations"] and det["probabilities"]["noise"] > 0.5
    assert reports[0]["detector"] == {"unavailable": "not asked"}


def test_reference_of_another_size_is_refused(clean_and_noisy):
    clean, noisy = clean_and_noisy
    with pytest.raises(RestoreAgentError, match="same size"):
        assess_image(noisy, ref=clean[:64], detector=False)


def test_command_json_and_a_bad_file(tmp_path, clean_and_noisy, capsys):
    clean, noisy = clean_and_noisy
    c, n = save_image(clean, tmp_path / "clean.png"), save_image(noisy, tmp_path / "noisy.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["assess", str(n), str(bad), "--ref", str(c), "--json", "--no-detector"]) == 2
    captured = capsys.readouterr()
    out = json.loads(captured.out)  # nothing else on stdout (pyiqa's "Downloading" notices are not)
    assert [r["image"] for r in out] == [str(n)] and out[0]["ref"] == str(c)
    assert out[0]["full_reference"]["psnr"]["value"] < 30
    assert captured.err.strip().count("\n") == 0 and "bad.png" in captured.err


def test_command_table(tmp_path, clean_and_noisy, capsys):
    path = save_image(clean_and_noisy[1], tmp_path / "noisy.png")
    assert main(["assess", str(path)]) == 0
    out = capsys.readouterr().out
    assert "piqe" in out and "noise" in out and "detector sees: noise" in out
