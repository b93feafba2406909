"""Perception: camera-realism degradations, labels, training, calibration, the detector and `detect`."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from skimage import data

from restoreagent.config import load
from restoreagent.degradations import degrade, replay
from restoreagent.errors import RestoreAgentError
from restoreagent.jobs import smoke_config
from restoreagent.perception import Detection, Detector
from restoreagent.perception.calibration import calibrate, fit_platt, fit_thresholds
from restoreagent.perception.config import PerceptionTrainConfig
from restoreagent.perception.detector import tile_grid
from restoreagent.perception.labels import (
    LABELS,
    SEVERITY_PARAMS,
    denormalise_param,
    normalise_param,
    targets_from_record,
)
from restoreagent.tasks import DEGRADATIONS


def _crop():
    return data.astronaut()[100:196, 150:246]


def _h(a):
    return hashlib.sha256(a.tobytes()).hexdigest()[:16]


# Bytes of the generator before the camera parameters existed (commit acfe09c): unchanged.
OLD_BYTES = {
    0: "9892b431aa076ddd", 1: "f47dadad8060a498", 2: "63618fef81291234",
    3: "0d06c33325ca2df9", 4: "6e1958c7e9c498eb", 5: "9d1d98de669e9dba",
    "noise:sigma=20,jpeg:quality=25": "840592c09c5c0cb0",
    "low_light,noise": "79c0f00fa1d6adad",
    "snow,low_light,jpeg": "91d9e76b591db9db",
}


@pytest.mark.parametrize("key", list(OLD_BYTES))
def test_old_chains_keep_their_bytes(key):
    if isinstance(key, int):
        out, _ = degrade(_crop(), k=1 + key % 4, seed=key)
    else:
        out, _ = degrade(_crop(), chain=key, seed=3)
    assert _h(out) == OLD_BYTES[key]


def test_camera_parameters_are_recorded_and_replay():
    img = _crop()
    out, rec = degrade(img, chain="low_light,noise,jpeg", seed=5, camera=1.0)
    params = {c["name"]: c["params"] for c in rec["chain"]}
    assert {"shot", "chroma_corr", "grain"} <= set(params["noise"])
    assert {"sensor", "highlights"} <= set(params["low_light"])
    assert "sharpen" in params["jpeg"]
    assert _h(replay(img, rec)) == _h(out)
    plain, rec0 = degrade(img, chain="low_light,noise,jpeg", seed=5)
    assert all(set(c["params"]) <= {"gamma", "scale", "sigma", "quality"} for c in rec0["chain"])
    assert _h(plain) != _h(out)
    with pytest.raises(RestoreAgentError, match="camera"):
        degrade(img, k=2, seed=0, camera=1.5)


def test_camera_noise_models():
    flat = np.concatenate([np.full((64, 64, 3), 0.1, np.float32), np.full((64, 64, 3), 0.9, np.float32)], axis=1)
    shot, _ = degrade(flat, chain="noise:sigma=20,shot=1.0", seed=1)
    n = shot - flat
    assert n[:, 64:].std() > 2.0 * n[:, :64].std()  # signal-dependent: more noise where it is bright
    corr, _ = degrade(flat, chain="noise:sigma=20,chroma_corr=0.9", seed=1)
    c = corr - flat
    assert np.corrcoef(c[..., 0].ravel(), c[..., 1].ravel())[0, 1] > 0.7
    white, _ = degrade(flat, chain="noise:sigma=20", seed=1)
    grain, _ = degrade(flat, chain="noise:sigma=20,grain=1.0", seed=1)

    def lag1(x):
        x = (x - flat)[..., 0]
        return np.corrcoef(x[:, :-1].ravel(), x[:, 1:].ravel())[0, 1]

    assert lag1(grain) > 0.5 > abs(lag1(white))
    lamp = np.full((32, 32, 3), 1.0, np.float32)
    dark, _ = degrade(lamp, chain="low_light:gamma=2,scale=0.3", seed=0)
    kept, _ = degrade(lamp, chain="low_light:gamma=2,scale=0.3,highlights=1", seed=0)
    assert dark.mean() < 0.35 and kept.mean() > 0.95


def test_labels_and_severity_roundtrip():
    assert LABELS == DEGRADATIONS
    _, rec = degrade(_crop(), chain="noise:sigma=50,jpeg:quality=10,low_light", seed=0)
    presence, sev, mask = targets_from_record(rec)
    assert presence.sum() == 3 and presence[LABELS.index("noise")] == 1
    j = [i for i, (n, k, _) in enumerate(SEVERITY_PARAMS) if n == "noise"][0]
    q = [i for i, (n, k, _) in enumerate(SEVERITY_PARAMS) if n == "jpeg"][0]
    assert sev[j] == pytest.approx(1.0) and sev[q] == pytest.approx(1.0)  # both at their worst end
    assert mask.sum() == 4  # noise, jpeg, and low light's two parameters
    for name, key, _ in SEVERITY_PARAMS:
        assert denormalise_param(name, key, normalise_param(name, key, denormalise_param(name, key, 0.3))) == pytest.approx(
            denormalise_param(name, key, 0.3))


def test_calibration_recovers_scale_and_thresholds():
    rng = np.random.default_rng(0)
    z = rng.normal(-1.0, 3.0, (8000, 2))  # true log-odds
    y = rng.random(z.shape) < 1 / (1 + np.exp(-z))
    a, b = fit_platt(z * 3.0, y.astype(float))  # over-confident logits are scaled back
    assert np.allclose(a, 1 / 3, atol=0.05) and np.allclose(b, 0.0, atol=0.15)
    p = calibrate(z * 3.0, a, b)
    t = fit_thresholds(p, y.astype(float))
    assert np.allclose(t, 0.5, atol=0.1)  # calibrated: the accuracy-optimal threshold is near 1/2


def test_tile_grid_spreads_and_limits():
    assert tile_grid(100, 100, 128, 16) == [(0, 0)]
    g = tile_grid(3000, 4000, 128, 16)
    assert len(g) <= 16 and (0, 0) in g and (3000 - 128, 4000 - 128) in g
    assert len(tile_grid(512, 512, 128, 16)) == 16


SMOKE = smoke_config("train-perception")


def test_config_overrides():
    cfg = load(PerceptionTrainConfig, [SMOKE], ["spec.camera=0.25", "net.widths=[8,8,16,16]", "steps=3"])
    assert cfg.spec.camera == 0.25 and cfg.net.widths == (8, 8, 16, 16) and cfg.steps == 3
    assert cfg.batch_size == 8 and cfg.workers == 0  # from the smoke config
    with pytest.raises(RestoreAgentError, match="nonsense"):
        load(PerceptionTrainConfig, [], ["nonsense=1"])


@pytest.fixture(scope="module")
def smoke_detector(tmp_path_factory):
    """A detector trained for a few steps on CPU on scikit-image photos (the smoke config)."""
    from restoreagent.imageio import save_image
    from restoreagent.perception.train import train

    root = tmp_path_factory.mktemp("perception")
    photos = root / "photos"
    photos.mkdir()
    for i, name in enumerate(["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"]):
        img = getattr(data, name)()
        img = img[0] if isinstance(img, tuple) else img
        save_image(img[:256, :256].astype(np.float32) / 255.0, photos / f"p{i}.png")
    cfg = load(PerceptionTrainConfig, [SMOKE], [f"photos=[{photos}]", f"out={root / 'run'}", "val_fraction=0.34"])
    folder = train(cfg)
    return cfg, folder


def test_training_exports_a_loadable_detector_and_resumes(smoke_detector):
    from dataclasses import replace

    from restoreagent.perception.train import train

    cfg, folder = smoke_detector
    meta = json.loads((folder / "detector.json").read_text())
    assert meta["labels"] == list(LABELS) and len(meta["thresholds"]) == len(LABELS)
    assert meta["train"]["trained_steps"] == cfg.steps
    assert meta["train"]["validation"]["photos"]  # a held-out split of the train photos
    det = Detector(folder)
    d = det.detect(np.asarray(data.astronaut(), np.float32) / 255.0)
    assert isinstance(d, Detection) and set(d.probabilities) == set(LABELS)
    assert all(0.0 <= p <= 1.0 for p in d.probabilities.values()) and d.tiles == 16
    assert det.detect(np.zeros((20, 30, 3), np.float32)).tiles == 1  # smaller than a tile: padded
    train(replace(cfg, steps=cfg.steps + 2))  # continues from the checkpoint
    log = [json.loads(x) for x in (folder.parent / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == cfg.steps + 2


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "restoreagent.cli", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_detect_cli_reports_bad_files_and_goes_on(smoke_detector, tmp_path):
    from restoreagent.imageio import save_image

    _, folder = smoke_detector
    d = tmp_path / "in"
    d.mkdir()
    save_image(np.asarray(data.coffee(), np.float32) / 255.0, d / "good.png")
    (d / "junk.png").write_bytes(b"not an image at all")
    good = (d / "good.png").read_bytes()
    (d / "cut.png").write_bytes(good[: len(good) // 3])
    r = _cli("detect", d, "--json", "--detector", folder, "--top-k", "3")
    assert r.returncode == 2
    errors = [x for x in r.stderr.splitlines() if x.startswith("restoreagent: error:")]
    assert len(errors) == 2 and any("junk.png" in e for e in errors) and any("cut.png" in e for e in errors)
    rows = json.loads(r.stdout)
    ok = [x for x in rows if "error" not in x]
    assert [x["input"] for x in ok] == [str(d / "good.png")]
    assert set(ok[0]) >= {"input", "degradations", "probabilities", "severity"}
    r = _cli("detect", d / "good.png", "--detector", folder, "--top-k", "2")
    assert r.returncode == 0 and "top:" in r.stdout
    r = _cli("detect", tmp_path / "missing.png", "--detector", folder)
    assert r.returncode == 2 and "missing.png" in r.stderr and "Traceback" not in r.stderr


def test_fixed_detect_planner_follows_detected_set_and_severity():
    from restoreagent.planners import PlanRequest, get_planner

    class Stub:
        def detect(self, image):
            return Detection(["noise", "jpeg"], {n: 0.0 for n in LABELS}, {},
                             params={"noise": {"sigma": 45.0}, "jpeg": {"quality": 12.0}})

    answer = get_planner("fixed+detect", detector=Stub()).plan(PlanRequest(image=np.zeros((8, 8, 3), np.float32)))
    assert answer.degradations == ("noise", "jpeg")
    assert [(s.task, s.tool) for s in answer.plan] == [("dejpeg", "unet_dejpeg_severe"), ("denoise", "unet_denoise_high")]


def test_planner_with_the_detector_as_vision_tower(tmp_path):
    """build_default with vision=perception: the detector's weights in a stock LLaVA, saved and loaded
    through the Auto classes; with saw=detector the answer starts with the detector's set."""
    import torch

    from restoreagent.perception.detector import DEFAULT_DIR
    from restoreagent.planners import PlanRequest
    from restoreagent.planners.vlm import VLMPlanner
    from restoreagent.planners.vlm.build_default import build_default

    out = build_default(tmp_path / "p", sizes={"vision": "perception", "patch_size": 128, "view_size": 256,
                                               "text_hidden": 32, "text_layers": 1, "text_mlp": 64}, layout="tiles")
    planner = VLMPlanner(out, saw="detector")
    tower = planner.net.model.vision_tower.net.state_dict()
    from safetensors.torch import load_file

    shipped = load_file(str(DEFAULT_DIR / "model.safetensors"))
    assert all(torch.allclose(tower[k].float(), shipped[k].float()) for k in shipped)
    image = np.asarray(data.coffee(), np.float32) / 255.0
    noisy, _ = degrade(image, chain="noise:sigma=40", seed=0)
    answer = planner.plan(PlanRequest(image=noisy))
    assert answer.degradations == tuple(planner.last_detection.degradations)
    assert "noise" in answer.degradations
    # the decision read off the tower's tokens is the detector's on the same 4 tiles
    alone = Detector().detect(noisy, max_tiles=4)
    assert planner.last_detection.degradations == alone.degradations
    assert all(abs(planner.last_detection.probabilities[k] - p) < 0.05 for k, p in alone.probabilities.items())
    assert planner.net.model.vision_tower._reuse is None  # the handed-over output does not outlive the call


def test_shipped_planner_plans_the_readme_example():
    from pathlib import Path

    from restoreagent.imageio import load_image
    from restoreagent.planners import PlanRequest, get_planner

    example = Path(__file__).resolve().parent.parent / "examples" / "astronaut_noise_jpeg.png"
    answer = get_planner("vlm").plan(PlanRequest(image=load_image(example)))
    assert set(answer.degradations) == {"noise", "jpeg"}
    assert {s.task for s in answer.plan} == {"denoise", "dejpeg"}


def test_a_new_run_starts_from_a_trained_detector(smoke_detector, tmp_path):
    from dataclasses import replace

    import torch
    from safetensors.torch import load_file

    from restoreagent.perception.train import train

    cfg, folder = smoke_detector
    out = train(replace(cfg, out=str(tmp_path / "more"), init=str(folder), steps=1, lr=1e-9, warmup=1))
    before, after = load_file(str(folder / "model.safetensors")), load_file(str(out / "model.safetensors"))
    # one step at a vanishing learning rate: the weights are the initial detector's, not a fresh init
    assert all(torch.allclose(before[k].float(), after[k].float(), atol=1e-2) for k in before if "num_batches" not in k and "running" not in k)
