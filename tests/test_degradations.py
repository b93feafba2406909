"""Tests for the synthetic degradation generator (restoreagent.degradations)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage import data

import restoreagent.degradations as deg
from restoreagent.degradations import (
    PARAM_LIMITS,
    PARAM_RANGES,
    apply_degradation,
    degrade,
    depth_proxy,
    format_chain,
    parse_chain,
    replay,
    sample_combination,
    sample_params,
)
from restoreagent.degradations.params import is_int_range
from restoreagent.errors import RestoreAgentError, UnknownNameError
from restoreagent.tasks import CORE_DEGRADATIONS, DEGRADATIONS, physical_order

RANDOM_CONTENT = {"noise", "rain", "snow"}


def _small(img: np.ndarray, w: int, h: int) -> np.ndarray:
    f = img.astype(np.float32) / 255.0
    return np.ascontiguousarray(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def astro():
    return _small(data.astronaut(), 160, 128)


@pytest.fixture(scope="module")
def cat():
    return _small(data.chelsea(), 150, 100)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))


def mild(name: str) -> dict:
    """The mildest end of every range (jpeg: highest quality, low_light: brightest)."""
    p = {k: r[0] for k, r in PARAM_RANGES[name].items()}
    if name == "jpeg":
        p["quality"] = PARAM_RANGES["jpeg"]["quality"][1]
    if name == "low_light":
        p["scale"] = PARAM_RANGES["low_light"]["scale"][1]
    return p


# ------------------------------------------------------------------ vocabulary and ranges


def test_ranges_cover_vocabulary_and_are_documented():
    assert set(PARAM_RANGES) == set(DEGRADATIONS) == set(PARAM_LIMITS)
    doc = deg.__doc__
    for name, params in PARAM_RANGES.items():
        assert set(PARAM_LIMITS[name]) == set(params)
        for key, r in params.items():
            lo, hi = r
            assert lo < hi
            llo, lhi = PARAM_LIMITS[name][key]
            assert llo <= lo and hi <= lhi, (name, key)
            row = next(line for line in doc.splitlines() if f" {key} " in line and f"{lo} – {hi}" in line)
            assert row, (name, key)


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_sample_params_in_range_and_json(name):
    rng = np.random.default_rng(7)
    for _ in range(50):
        p = sample_params(name, rng)
        assert list(p) == list(PARAM_RANGES[name])
        for key, v in p.items():
            lo, hi = PARAM_RANGES[name][key]
            if is_int_range(PARAM_RANGES[name][key]):
                assert type(v) is int and lo <= v <= hi
            else:
                assert type(v) is float and lo <= v <= hi and round(v, 4) == v
        assert json.loads(json.dumps(p)) == p


# ------------------------------------------------------------------ each degradation


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_shape_dtype_range(name, astro):
    odd = np.ascontiguousarray(astro[:101, :77])
    for img in (astro, odd):
        for seed in range(3):
            params = sample_params(name, np.random.default_rng(seed))
            out = apply_degradation(img, name, params, np.random.default_rng(seed))
            assert out.shape == img.shape
            assert out.dtype == np.float32
            assert out.flags.c_contiguous
            assert 0.0 <= out.min() and out.max() <= 1.0
            assert not np.shares_memory(out, img)


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_deterministic(name, astro):
    a, ra = degrade(astro, name, seed=11)
    b, rb = degrade(astro, name, seed=11)
    assert a.tobytes() == b.tobytes() and ra == rb
    c, rc = degrade(astro, name, seed=12)
    assert c.tobytes() != a.tobytes()  # other seed: other parameters (and content)
    # With the parameters fixed, only noise and rain still depend on the seed.
    fixed = [(name, ra["chain"][0]["params"])]
    d, _ = degrade(astro, fixed, seed=11)
    e, _ = degrade(astro, fixed, seed=12)
    assert d.tobytes() == a.tobytes()
    assert (e.tobytes() != d.tobytes()) == (name in RANDOM_CONTENT)


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_measurably_degrades(name, astro):
    out = apply_degradation(astro, name, mild(name), np.random.default_rng(0))
    assert psnr(out, astro) < 35.0, name
    for seed in range(3):
        out, _ = degrade(astro, name, seed=seed)
        assert psnr(out, astro) < 35.0, name


MONOTONE = [
    ("noise", "sigma", [5.0, 15.0, 30.0, 50.0], {}),
    ("motion_blur", "length", [3, 7, 13, 25], {"angle": 30.0}),
    ("defocus_blur", "radius", [1.0, 2.0, 3.5, 5.0], {}),
    ("jpeg", "quality", [90, 50, 25, 10], {}),
    ("haze", "beta", [0.6, 1.0, 1.4, 1.8], {"A": 0.85}),
    ("low_resolution", "scale", [2, 3, 4], {}),
    ("rain", "density", [0.001, 0.002, 0.004], {"length": 25, "angle": 85.0, "intensity": 0.7}),
    ("low_light", "scale", [0.6, 0.4, 0.25], {"gamma": 2.0}),
    ("snow", "density", [0.002, 0.004, 0.008], {"size": 1.75, "angle": 95.0, "intensity": 0.7}),
]


@pytest.mark.parametrize("name,key,values,other", MONOTONE, ids=[m[0] for m in MONOTONE])
def test_monotone_in_severity(name, key, values, other, astro, cat):
    for img in (astro, cat):
        scores = [
            psnr(apply_degradation(img, name, {key: v, **other}, np.random.default_rng(3)), img)
            for v in values
        ]
        assert all(a > b for a, b in zip(scores, scores[1:])), (name, scores)


def test_uint8_input_and_bad_images(astro):
    u8 = (astro * 255 + 0.5).astype(np.uint8)
    out = apply_degradation(u8, "defocus_blur", {"radius": 2.0})
    assert out.dtype == np.float32 and out.shape == astro.shape
    with pytest.raises(RestoreAgentError, match="shape"):
        apply_degradation(astro[..., 0], "noise", {"sigma": 10})
    with pytest.raises(RestoreAgentError, match="dtype"):
        apply_degradation(astro.astype(np.int32), "noise", {"sigma": 10})
    bad = astro.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(RestoreAgentError, match="NaN"):
        apply_degradation(bad, "noise", {"sigma": 10})


def test_apply_degradation_params_checked(astro):
    with pytest.raises(RestoreAgentError, match="angle"):
        apply_degradation(astro, "motion_blur", {"length": 9})
    with pytest.raises(UnknownNameError, match="known: sigma"):
        apply_degradation(astro, "noise", {"sigma": 9, "mean": 0})
    with pytest.raises(UnknownNameError, match="known: haze"):
        apply_degradation(astro, "fog", {})
    with pytest.raises(RestoreAgentError, match="integer"):
        apply_degradation(astro, "jpeg", {"quality": 20.5})
    with pytest.raises(RestoreAgentError, match="outside"):
        apply_degradation(astro, "noise", {"sigma": 300})
    # Outside the sampled range but inside the limits is allowed; integral floats become ints.
    out = apply_degradation(astro, "jpeg", {"quality": 90.0})
    assert out.shape == astro.shape


def test_haze_increases_with_distance():
    grey = np.full((120, 90, 3), 0.3, np.float32)
    out = apply_degradation(grey, "haze", {"beta": 1.2, "A": 0.9})
    rows = out.mean(axis=(1, 2))
    assert np.all(np.diff(rows) < 0)  # brighter (hazier) towards the top
    assert rows[-1] > 0.3 + 0.02  # a little haze even at the bottom
    d = depth_proxy(_small(data.astronaut(), 128, 128))
    assert d.shape == (128, 128) and d.dtype == np.float32
    assert 0.2 <= d.min() and d.max() <= 1.0
    assert d[:10].mean() > d[-10:].mean()


def test_rain_only_brightens_and_is_streaky(astro):
    p = {"density": 0.003, "length": 30, "angle": 90.0, "intensity": 0.8}
    out = apply_degradation(astro, "rain", p, np.random.default_rng(1))
    diff = (out - astro).mean(axis=2)
    assert diff.min() >= -1e-6
    mask = diff > 0.05
    assert 0.02 < mask.mean() < 0.6
    # Vertical streaks: the change is far more correlated along columns than along rows.
    v = np.mean(mask[1:] & mask[:-1]) / mask.mean()
    h = np.mean(mask[:, 1:] & mask[:, :-1]) / mask.mean()
    assert v > 0.8 and v > h + 0.2


def test_low_light_keeps_hue(astro):
    out = apply_degradation(astro, "low_light", {"gamma": 2.0, "scale": 0.4})
    assert out.mean() < 0.5 * astro.mean()
    assert out.max() <= 0.4 + 1e-6
    bright = astro.max(axis=2) > 0.3
    ratio_in = astro[..., 0][bright] / astro.max(axis=2)[bright]
    ratio_out = out[..., 0][bright] / np.maximum(out.max(axis=2)[bright], 1e-6)
    assert np.abs(ratio_in - ratio_out).max() < 1e-3


def test_low_resolution_keeps_size_and_removes_detail(astro):
    out = apply_degradation(astro, "low_resolution", {"scale": 4})
    assert out.shape == astro.shape

    def hf(x):
        return np.abs(cv2.Laplacian(x.mean(axis=2), cv2.CV_32F)).mean()

    assert hf(out) < 0.5 * hf(astro)


# ------------------------------------------------------------------ parse_chain


def test_parse_chain_forms():
    assert parse_chain("noise, jpeg") == [("noise", {}), ("jpeg", {})]
    assert parse_chain("noise:sigma=25,jpeg:quality=20") == [
        ("noise", {"sigma": 25.0}),
        ("jpeg", {"quality": 20}),
    ]
    assert parse_chain(" Motion-Blur : length = 15 , angle=30 ; haze:a=0.8 ") == [
        ("motion_blur", {"length": 15, "angle": 30.0}),
        ("haze", {"A": 0.8}),
    ]
    chain = parse_chain("jpeg:quality=20,noise")  # order as written; degrade sorts it
    assert [n for n, _ in chain] == ["jpeg", "noise"]
    assert type(parse_chain("jpeg:quality=20.0")[0][1]["quality"]) is int


def test_parse_chain_round_trip():
    rng = np.random.default_rng(5)
    for _ in range(20):
        names = sample_combination(rng, int(rng.integers(1, 5)))
        chain = [(n, sample_params(n, rng)) for n in names]
        assert parse_chain(format_chain(chain)) == chain
    assert format_chain([("noise", {}), ("jpeg", {"quality": 20})]) == "noise,jpeg:quality=20"


@pytest.mark.parametrize(
    "text,exc,match",
    [
        ("nois", UnknownNameError, "known: haze, rain"),
        ("noise:sigm=3", UnknownNameError, "known: sigma"),
        ("noise:sigma=abc", RestoreAgentError, "must be a number"),
        ("noise:sigma=nan", RestoreAgentError, "finite"),
        ("noise:sigma=-1", RestoreAgentError, "outside"),
        ("jpeg:quality=7.5", RestoreAgentError, "integer"),
        ("noise,noise", RestoreAgentError, "twice"),
        ("noise:sigma=3,sigma=4", RestoreAgentError, "twice"),
        ("sigma=3,noise", RestoreAgentError, "before any degradation"),
        ("", RestoreAgentError, "empty"),
        ("noise,,jpeg", RestoreAgentError, "empty item"),
        ("noise:", RestoreAgentError, "missing key=value"),
        ("noise:sigma", RestoreAgentError, "key=value"),
    ],
)
def test_parse_chain_errors(text, exc, match):
    with pytest.raises(exc, match=match) as info:
        parse_chain(text)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ chains, records, replay


def test_record_and_replay_bytes(astro):
    out, rec = degrade(astro, "jpeg:quality=30,noise,rain:angle=70", seed=42)
    rec2 = json.loads(json.dumps(rec))
    assert rec2 == rec
    assert rec["seed"] == 42 and rec["shape"] == [128, 160]
    assert rec["degradations"] == ["rain", "noise", "jpeg"]
    assert [s["name"] for s in rec["chain"]] == rec["degradations"]
    for step in rec["chain"]:
        assert list(step["params"]) == list(PARAM_RANGES[step["name"]])
    assert rec["chain"][2]["params"]["quality"] == 30 and rec["chain"][0]["params"]["angle"] == 70.0
    assert replay(astro, rec2).tobytes() == out.tobytes()
    with pytest.raises(RestoreAgentError, match="128x160"):
        replay(astro[:64], rec)


def test_physical_order_is_applied(astro):
    chain = [("jpeg", {"quality": 15}), ("noise", {"sigma": 20.0}), ("haze", {"beta": 1.0, "A": 0.8})]
    out, rec = degrade(astro, chain, seed=3)
    assert rec["degradations"] == ["haze", "noise", "jpeg"]
    out2, rec2 = degrade(astro, list(reversed(chain)), seed=3)
    assert out2.tobytes() == out.tobytes() and rec2 == rec
    # Same as applying the steps by hand in physical order with the documented child generators.
    x = astro
    for step in rec["chain"]:
        i = DEGRADATIONS.index(step["name"])
        x = apply_degradation(x, step["name"], step["params"], np.random.default_rng([3, 2, i]))
    assert x.tobytes() == out.tobytes()
    # ... and not the same as the order the caller wrote.
    y = astro
    for name, params in chain:
        i = DEGRADATIONS.index(name)
        y = apply_degradation(y, name, params, np.random.default_rng([3, 2, i]))
    assert y.tobytes() != out.tobytes()


def test_fixing_a_parameter_changes_nothing_else(astro):
    _, base = degrade(astro, "haze,motion_blur,noise", seed=9)
    _, fixed = degrade(astro, "haze:beta=1.5,motion_blur,noise", seed=9)
    b, f = base["chain"], fixed["chain"]
    assert f[0]["params"]["beta"] == 1.5 and f[0]["params"]["A"] == b[0]["params"]["A"]
    assert f[1:] == b[1:]
    # Adding or removing another degradation does not change a step's parameters or content.
    _, fewer = degrade(astro, "noise", seed=9)
    assert fewer["chain"][0] == b[2]
    n1, _ = degrade(astro, [("noise", {"sigma": 20.0})], seed=9)
    n2, _ = degrade(astro, [("noise", {"sigma": 20.0}), ("haze", {"beta": 0.0, "A": 0.8})], seed=9)
    assert n1.tobytes() == n2.tobytes()  # beta 0 haze is the identity


def test_chain_input_forms_agree(astro):
    forms = [
        "noise:sigma=12,jpeg",
        [("noise", {"sigma": 12}), ("jpeg", None)],
        [{"name": "noise", "params": {"sigma": 12.0}}, {"name": "jpeg"}],
        [("noise", {"sigma": 12.0}), "jpeg"],
    ]
    results = [degrade(astro, f, seed=4) for f in forms]
    for out, rec in results[1:]:
        assert out.tobytes() == results[0][0].tobytes() and rec == results[0][1]


def test_chain_errors(astro):
    with pytest.raises(RestoreAgentError, match="twice"):
        degrade(astro, [("noise", {}), ("noise", {"sigma": 5})])
    with pytest.raises(RestoreAgentError, match="exactly one"):
        degrade(astro, "noise", k=2)
    with pytest.raises(RestoreAgentError, match="exactly one"):
        degrade(astro)
    with pytest.raises(RestoreAgentError, match="seed"):
        degrade(astro, "noise", seed=-1)
    with pytest.raises(RestoreAgentError, match="seed"):
        degrade(astro, "noise", seed=1.5)
    with pytest.raises(UnknownNameError, match="known"):
        degrade(astro, [{"name": "hail", "params": {}}])
    with pytest.raises(RestoreAgentError, match="chain step"):
        degrade(astro, [{"nam": "noise"}])
    with pytest.raises(RestoreAgentError, match="k must be"):
        degrade(astro, k=0)


def test_empty_chain_is_identity(astro):
    out, rec = degrade(astro, [], seed=1)
    assert out.tobytes() == astro.tobytes() and not np.shares_memory(out, astro)
    assert rec["chain"] == [] and rec["degradations"] == []


def test_sample_combination():
    rng = np.random.default_rng(0)
    seen = set()
    for k in (1, 2, 3, 4):
        for _ in range(100):
            names = sample_combination(rng, k)
            assert len(names) == k == len(set(names))
            assert names == physical_order(names)
            seen.update(names)
    assert seen == set(CORE_DEGRADATIONS)  # extensions (snow) are never drawn
    a = sample_combination(np.random.default_rng(3), 3)
    assert a == sample_combination(np.random.default_rng(3), 3)
    for bad in (0, 9, 2.0, True):
        with pytest.raises(RestoreAgentError):
            sample_combination(rng, bad)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_random_k_chains(k, cat):
    combos = set()
    for seed in range(6):
        out, rec = degrade(cat, k=k, seed=seed)
        assert out.shape == cat.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert len(rec["chain"]) == k
        assert rec["degradations"] == physical_order(rec["degradations"])
        assert json.loads(json.dumps(rec)) == rec
        assert replay(cat, rec).tobytes() == out.tobytes()
        again, rec_again = degrade(cat, k=k, seed=seed)
        assert again.tobytes() == out.tobytes() and rec_again == rec
        combos.add(tuple(rec["degradations"]))
    assert len(combos) > 1 or k == len(CORE_DEGRADATIONS)
