"""The classical tool box (restoreagent/tools/classical, catalog/tools.yaml).

Each catalogued tool must build, keep the image contract, and improve PSNR on the degradation
its task undoes, at a severity inside the range its variant is tuned for; and the variant tuned
for that severity must beat the task's other variants there (the point of having variants).
Degradations come from the generator (restoreagent.degradations) with fixed parameters.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from restoreagent.degradations import apply_degradation
from restoreagent.tasks import DEGRADATION_FOR_TASK, TASKS
from restoreagent.tools import get_tool, list_specs


def _photo(name: str, size: int = 128) -> np.ndarray:
    img = getattr(data, name)()[..., :3]
    h, w = img.shape[:2]
    y0, x0 = (h - min(h, w)) // 2, (w - min(h, w)) // 2
    img = img[y0 : y0 + min(h, w), x0 : x0 + min(h, w)]
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [_photo("astronaut"), _photo("chelsea")]


def _psnr(a: np.ndarray, ref: np.ndarray) -> float:
    return float(peak_signal_noise_ratio(ref.astype(np.float64), a.astype(np.float64), data_range=1.0))


def _degrade(img: np.ndarray, name: str, params: dict, seed: int) -> np.ndarray:
    return apply_degradation(img, name, params, np.random.default_rng(seed))


PREFIX = "restoreagent.tools.classical:"


def _ours(task: str | None = None):
    """The catalogued tools of this tool box (other tests register toy tools at run time)."""
    return [s for s in list_specs(task) if s.function and s.function.startswith(PREFIX)]


CLASSICAL = [s.name for s in _ours()]


# ------------------------------------------------------------------ catalogue and contract


def test_every_task_has_two_or_three_classical_tools():
    for task in TASKS:
        names = [s.name for s in _ours(task)]
        assert 2 <= len(names) <= 3, (task, names)
        assert all(s.available for s in _ours(task))  # all installed: no optional dependency


def test_catalogue_entries_are_complete():
    assert len(CLASSICAL) == len(set(CLASSICAL))
    for s in _ours():
        assert s.kind == "classical", s.name
        assert s.name == s.name.lower() and " " not in s.name and len(s.name) <= 16, s.name
        assert s.description and "\n" not in s.description, s.name
        assert s.cost_s is not None and 0 < s.cost_s < 2.0, s.name
        assert s.available, (s.name, s.missing)


@pytest.mark.parametrize("name", CLASSICAL)
def test_tool_keeps_the_image_contract(name, photos):
    tool = get_tool(name)
    rng = np.random.default_rng(0)
    odd = np.clip(photos[0][:37, :53] + rng.normal(0, 0.05, (37, 53, 3)), 0, 1).astype(np.float32)
    for img in (photos[0], odd, rng.random((5, 7, 3), dtype=np.float32), np.zeros((16, 16, 3), np.float32)):
        before = img.copy()
        out = tool(img)
        assert out.shape == img.shape and out.dtype == np.float32, name
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0, name
        np.testing.assert_array_equal(img, before)  # the input is not modified


def test_tools_are_deterministic(photos):
    noisy = _degrade(photos[0], "noise", {"sigma": 20.0}, 1)
    for name in ("dct_mid", "motion_short", "derain_light"):
        np.testing.assert_array_equal(get_tool(name)(noisy), get_tool(name)(noisy))


# ------------------------------------------------------------------ each variant wins its range

# (degradation parameters, the variant that should win there, the least mean PSNR gain in dB)
CASES = [
    ({"sigma": 8.0}, "dct_low", 3.0),
    ({"sigma": 20.0}, "dct_mid", 5.0),
    ({"sigma": 45.0}, "dct_high", 7.0),
    ({"length": 7, "angle": 120.0}, "motion_short", 2.0),
    ({"length": 20, "angle": 60.0}, "motion_long", 2.0),
    ({"radius": 1.5}, "defocus_small", 1.5),
    ({"radius": 4.0}, "defocus_large", 1.5),
    ({"quality": 40}, "dejpeg_mild", 0.3),
    ({"quality": 10}, "dejpeg_severe", 0.5),
    ({"beta": 0.6, "A": 0.85}, "dcp_light", 3.0),
    ({"beta": 1.8, "A": 0.85}, "dcp_dense", 4.0),
    ({"density": 0.001, "length": 20, "angle": 95.0, "intensity": 0.6}, "derain_light", 1.0),
    ({"density": 0.004, "length": 30, "angle": 100.0, "intensity": 0.9}, "derain_heavy", 3.0),
    ({"density": 0.003, "size": 1.2, "angle": 80.0, "intensity": 0.6}, "desnow_light", 4.0),
    ({"density": 0.007, "size": 2.3, "angle": 100.0, "intensity": 0.85}, "desnow_heavy", 3.0),
    ({"gamma": 1.6, "scale": 0.4}, "gamma_mild", 10.0),
    ({"gamma": 2.0, "scale": 0.4}, "gamma_mid", 10.0),
    ({"gamma": 2.4, "scale": 0.4}, "gamma_strong", 10.0),
    ({"scale": 2}, "ibp_x2", 0.5),
    ({"scale": 3}, "ibp_x3", 0.4),
    ({"scale": 4}, "ibp_x4", 0.3),
]


def test_cases_cover_every_catalogued_tool():
    assert sorted(name for _, name, _ in CASES) == sorted(CLASSICAL)


@pytest.mark.parametrize(("params", "winner", "min_gain"), CASES, ids=[c[1] for c in CASES])
def test_variant_improves_and_beats_its_siblings_in_its_range(params, winner, min_gain, photos):
    task = get_tool(winner).task
    degradation = DEGRADATION_FOR_TASK[task]
    pairs = [(x, _degrade(x, degradation, params, seed)) for seed, x in enumerate(photos)]
    base = np.mean([_psnr(y, x) for x, y in pairs])
    gains = {s.name: np.mean([_psnr(get_tool(s.name)(y), x) for x, y in pairs]) - base for s in _ours(task)}
    assert gains[winner] >= min_gain, gains
    assert max(gains, key=gains.get) == winner, gains


# ------------------------------------------------------------------ blind estimators


def test_motion_estimate_recovers_length_and_angle(photos):
    from restoreagent.tools.classical import estimate_motion

    for length, angle in ((9, 20.0), (18, 135.0)):
        blurred = _degrade(photos[0], "motion_blur", {"length": length, "angle": angle}, 0)
        est_len, est_angle = estimate_motion(blurred)
        assert abs(est_len - length) <= 1.5
        assert abs((est_angle - angle + 90) % 180 - 90) <= 4


def test_defocus_estimate_recovers_radius(photos):
    from restoreagent.tools.classical import estimate_defocus

    for radius in (2.0, 3.5):
        blurred = _degrade(photos[0], "defocus_blur", {"radius": radius}, 0)
        assert abs(estimate_defocus(blurred, 1.0, 5.0) - radius) <= 0.4


def test_noise_estimate_tracks_sigma(photos):
    from restoreagent.tools.classical._util import estimate_noise

    for sigma in (10.0, 25.0):
        noisy = _degrade(photos[1], "noise", {"sigma": sigma}, 3)
        assert abs(estimate_noise(noisy) * 255 - sigma) <= 0.2 * sigma


# ------------------------------------------------------------------ uncatalogued extras


def test_bm3d_and_lime_work():
    pytest.importorskip("bm3d")
    from restoreagent.tools.classical import bm3d_denoise, lime_brighten

    clean = _photo("astronaut", 64)
    noisy = _degrade(clean, "noise", {"sigma": 25.0}, 0)
    assert _psnr(bm3d_denoise(noisy), clean) > _psnr(noisy, clean) + 5.0
    dark = _degrade(clean, "low_light", {"gamma": 2.0, "scale": 0.4}, 0)
    assert _psnr(lime_brighten(dark), clean) > _psnr(dark, clean) + 5.0


def test_reserve_tools_are_runnable_but_not_searched(monkeypatch):
    from restoreagent.tools import registry
    from restoreagent.tools.registry import ToolSpec, register, tools_for_task

    monkeypatch.setattr(registry, "_EXTRA_SPECS", {})
    register(
        ToolSpec(
            name="zz_reserve",
            task="brighten",
            kind="classical",
            description="t",
            function="restoreagent.tools.classical:gamma_brighten",
            candidate=False,
        )
    )
    monkeypatch.delenv("RESTOREAGENT_ALL_TOOLS", raising=False)
    assert "zz_reserve" not in tools_for_task("brighten")
    img = np.full((8, 8, 3), 0.2, np.float32)
    assert get_tool("zz_reserve")(img).mean() > 0.2  # an explicit plan can still run it
    monkeypatch.setenv("RESTOREAGENT_ALL_TOOLS", "1")
    assert "zz_reserve" in tools_for_task("brighten")
