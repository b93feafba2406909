"""Learned tools: the runner (tiling, padding, scale), weight files, the training loop, and the
shipped networks against the classical tools of their task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from restoreagent.config import load
from restoreagent.degradations import apply_degradation
from restoreagent.jobs import smoke_config
from restoreagent.jobs.train_tool import ToolTrainConfig
from restoreagent.splits import split_files
from restoreagent.tasks import DEGRADATION_FOR_TASK
from restoreagent.tools import get_tool, list_specs
from restoreagent.tools.learned import build_learned_tool
from restoreagent.tools.learned.export import load_tool_network, read_tool_meta, save_tool_weights
from restoreagent.tools.learned.nets import ResUNet
from restoreagent.tools.learned.runner import TorchRunner, tile_starts
from restoreagent.tools.learned.training import sample_in_ranges, train_tool

REPO_ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ runner


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(100, 100, 8), (1000, 512, 32), (600, 256, 32), (257, 256, 8)]
)
def test_tiles_cover_the_image_with_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    for a, b in zip(starts, starts[1:]):
        assert 0 < b - a <= tile - overlap


class _LocalNet(torch.nn.Module):
    """Receptive field 5 px: tiles with a wider overlap must give exactly the untiled result."""

    def __init__(self, scale: int = 1):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 3 * scale * scale, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(scale)

    def forward(self, x):
        return torch.sigmoid(self.shuffle(self.c2(torch.relu(self.c1(x)))))


@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_run_equals_whole_run_for_a_local_network(scale):
    img = np.random.default_rng(0).random((150, 203, 3), dtype=np.float32)
    net = _LocalNet(scale)
    whole = TorchRunner(net, scale=scale, tile=0)(img)
    tiled = TorchRunner(net, scale=scale, tile=64, overlap=16)(img)
    assert whole.shape == (150 * scale, 203 * scale, 3)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_runner_pads_to_the_architecture_multiple_and_crops_back():
    net = ResUNet((4, 4, 4, 4), bottleneck_blocks=1)
    torch.nn.init.normal_(net.tail.weight, std=0.01)
    out = TorchRunner(net, multiple=net.multiple)(
        np.random.default_rng(1).random((37, 53, 3), dtype=np.float32)
    )
    assert out.shape == (37, 53, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_untrained_resunet_is_the_identity():
    img = np.random.default_rng(2).random((40, 48, 3), dtype=np.float32)
    np.testing.assert_allclose(TorchRunner(ResUNet(), multiple=8)(img), img, atol=1e-6)


def test_half_precision_on_cpu_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch):
    from restoreagent.tools.learned import runner as runner_module

    monkeypatch.delenv("RESTOREAGENT_HALF", raising=False)
    monkeypatch.setattr(runner_module, "cpu_has_fast_bfloat16", lambda: False)
    assert TorchRunner(_LocalNet(), device="cpu", half=True).dtype == torch.float32  # emulated: slower, so never
    monkeypatch.setattr(runner_module, "cpu_has_fast_bfloat16", lambda: True)
    assert TorchRunner(_LocalNet(), device="cpu", half=True).dtype == torch.bfloat16
    assert TorchRunner(_LocalNet(), device="cpu").dtype == torch.float32  # the default stays float32
    monkeypatch.setenv("RESTOREAGENT_HALF", "1")  # the variable turns it on for every tool ...
    assert TorchRunner(_LocalNet(), device="cpu").dtype == torch.bfloat16
    assert TorchRunner(_LocalNet(), device="cpu", half_ok=False).dtype == torch.float32  # ... unless the model can't
    assert runner_module.half_dtype(torch.device("cuda")) == torch.float16


def test_bfloat16_outputs_stay_close_to_float32_and_the_curve_keeps_float32(monkeypatch):
    from restoreagent.tools.learned.nets import CurveNet
    from restoreagent.tools.learned.runner import cpu_has_fast_bfloat16

    if not cpu_has_fast_bfloat16():
        pytest.skip("this CPU has no native bfloat16")
    monkeypatch.delenv("RESTOREAGENT_HALF", raising=False)
    img = np.random.default_rng(4).random((40, 48, 3), dtype=np.float32)
    net = _LocalNet()
    full, half = TorchRunner(net, device="cpu")(img), TorchRunner(net, device="cpu", half=True)(img)
    assert full.dtype == half.dtype == np.float32
    assert 0 < np.abs(full - half).max() < 0.02  # rounded differently, not a different function
    curve = TorchRunner(CurveNet(), device="cpu", half=True, tile=0)  # torch.quantile has no bfloat16 kernel
    assert curve.dtype == torch.float32 and curve(img).shape == img.shape


# ------------------------------------------------------------------ weight files


def test_weight_file_round_trip(tmp_path):
    net = ResUNet((4, 8, 8, 8), bottleneck_blocks=1)
    torch.nn.init.normal_(net.tail.weight, std=0.05)
    meta = {"name": "t", "arch": "resunet", "arch_kwargs": {"widths": [4, 8, 8, 8], "bottleneck_blocks": 1}}
    path = save_tool_weights(net, tmp_path / "t.safetensors", meta)
    assert read_tool_meta(path)["arch_kwargs"] == meta["arch_kwargs"]
    loaded, _ = load_tool_network(path)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():  # float16 storage: close, not equal
        np.testing.assert_allclose(loaded(x).numpy(), net(x).numpy(), atol=2e-3)
    img = np.random.default_rng(3).random((33, 35, 3), dtype=np.float32)
    assert build_learned_tool(str(path))(img).shape == img.shape


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not a restoreagent tool weight file"):
        load_tool_network(tmp_path / "x.safetensors")


# ------------------------------------------------------------------ training


def test_narrowed_ranges_are_respected():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = sample_in_ranges("noise", {"sigma": [30.0, 50.0]}, rng)
        assert 30 <= p["sigma"] <= 50
        q = sample_in_ranges("jpeg", {"quality": [10, 18]}, rng)
        assert isinstance(q["quality"], int) and 10 <= q["quality"] <= 18


def test_validation_photos_are_held_out(tmp_path):
    files = [tmp_path / f"{i:03d}.png" for i in range(30)]
    train, val = split_files(files, 12)
    assert val == [files[0], files[12], files[24]] and not set(train) & set(val)


def _tiny_cfg(tmp_path, images, steps):
    """The train-tool job's smoke config (configs/smoke/train-tool.yaml) on these photos, resumable."""
    overrides = [f"train.max_steps={steps}", f"data.images=[{images}]", f"output_dir={tmp_path / 'run'}", "resume=true"]
    return load(ToolTrainConfig, [smoke_config("train-tool")], overrides)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(getattr(data, name)()[:96, :96, :3]).save(d / f"{name}.png")
    return d


def test_training_exports_weights_and_resumes(tmp_path, photo_dir):
    first = train_tool(_tiny_cfg(tmp_path, photo_dir, steps=4))
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 4 and [h["step"] for h in first["history"]] == [2, 4]
    meta = read_tool_meta(first["weights"])
    assert meta["task"] == "denoise" and meta["ranges"] == {"sigma": [15.0, 30.0]} and meta["steps"] == 4
    # a longer run in the same folder continues from step 4 instead of starting over
    second = train_tool(_tiny_cfg(tmp_path, photo_dir, steps=6))
    assert [h["step"] for h in second["history"]] == [2, 4, 6]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 6


# ------------------------------------------------------------------ the shipped learned tools

LEARNED = [
    s for s in list_specs() if s.kind == "learned" and s.builder.startswith("restoreagent.tools.learned")
]


def _photo(name: str, size: int = 128) -> np.ndarray:
    import cv2

    img = getattr(data, name)()[..., :3]
    s = min(img.shape[:2])
    img = img[:s, :s]
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def test_every_task_has_a_shipped_learned_tool():
    assert {s.task for s in LEARNED} == set(DEGRADATION_FOR_TASK)
    for s in LEARNED:
        assert s.available, (s.name, s.missing)
        assert read_tool_meta(REPO_ROOT / "restoreagent" / s.weights)["name"] == s.name


# (learned tool, degradation parameters inside its training range)
WIN_CASES = [
    ("unet_denoise_low", {"sigma": 10.0}),
    ("unet_denoise_mid", {"sigma": 22.0}),
    ("unet_denoise_high", {"sigma": 40.0}),
    ("unet_motion", {"length": 15, "angle": 30.0}),
    ("unet_defocus", {"radius": 3.0}),
    ("unet_dejpeg_severe", {"quality": 12}),
    ("unet_dejpeg_mild", {"quality": 35}),
    ("unet_dehaze", {"beta": 1.2, "A": 0.85}),
    ("unet_derain", {"density": 0.003, "length": 25, "angle": 95.0, "intensity": 0.7}),
    ("unet_sr_x2", {"scale": 2}),
    ("unet_sr_x3", {"scale": 3}),
    ("unet_sr_x4", {"scale": 4}),
    ("unet_desnow", {"density": 0.005, "size": 1.75, "angle": 90.0, "intensity": 0.7}),
]


def test_win_cases_cover_every_learned_candidate():
    # curve_brighten is a reserve tool: the gamma variants invert the generator's darkening almost
    # exactly at their own exponent (test_curve_brighten_restores_low_light below)
    assert sorted(n for n, _ in WIN_CASES) == sorted(s.name for s in LEARNED if s.candidate)
    assert [s.name for s in LEARNED if not s.candidate] == ["curve_brighten"]


def test_curve_brighten_restores_low_light():
    tool = get_tool("curve_brighten")
    for i, name in enumerate(("astronaut", "chelsea")):
        clean = _photo(name)
        dark = apply_degradation(clean, "low_light", {"gamma": 2.2, "scale": 0.35}, np.random.default_rng(i))
        before = peak_signal_noise_ratio(clean, dark, data_range=1.0)
        assert peak_signal_noise_ratio(clean, tool(dark), data_range=1.0) > before + 12


@pytest.mark.parametrize(("name", "params"), WIN_CASES, ids=[c[0] for c in WIN_CASES])
def test_learned_tool_beats_every_classical_tool_of_its_task(name, params):
    tool = get_tool(name)
    photos = [_photo("astronaut"), _photo("chelsea")]
    pairs = [
        (x, apply_degradation(x, DEGRADATION_FOR_TASK[tool.task], params, np.random.default_rng(i)))
        for i, x in enumerate(photos)
    ]

    def mean_psnr(fn):
        return np.mean(
            [
                peak_signal_noise_ratio(x, np.asarray(fn(y), np.float64), data_range=1.0)
                for x, y in [(a.astype(np.float64), b) for a, b in pairs]
            ]
        )

    ours = mean_psnr(tool)
    classical = {s.name: mean_psnr(get_tool(s.name)) for s in list_specs(tool.task) if s.kind == "classical"}
    assert ours > max(classical.values()), (name, ours, classical)


def test_guided_network_reads_the_classical_tool_output(tmp_path):
    """A guided tool stacks a classical tool's output after its input; untrained, it returns the guide."""
    guide = {"function": "restoreagent.tools.classical:gamma_brighten", "params": {"gamma": 0.6}}
    net = ResUNet((4, 8, 8, 8), bottleneck_blocks=1, guides=1)
    meta = {
        "name": "g",
        "arch": "resunet",
        "arch_kwargs": {"widths": [4, 8, 8, 8], "bottleneck_blocks": 1, "guides": 1},
        "guides": [guide],
    }
    path = save_tool_weights(net, tmp_path / "g.safetensors", meta)
    img = _photo("astronaut", 64) * 0.3
    expected = get_tool("gamma_mild").spec  # any classical tool: here the guide function itself
    from restoreagent.tools.classical import gamma_brighten

    assert expected.function.endswith("gamma_brighten")
    np.testing.assert_allclose(build_learned_tool(str(path))(img), gamma_brighten(img, gamma=0.6), atol=1e-5)


def test_guided_training_stacks_the_guides(tmp_path, photo_dir):
    cfg = _tiny_cfg(tmp_path, photo_dir, steps=2)
    cfg.guides = [{"function": "restoreagent.tools.classical:gamma_brighten", "params": {"gamma": 0.8}}]
    summary = train_tool(cfg)
    assert "val_psnr_guide" in summary["history"][-1]
    model, meta = load_tool_network(summary["weights"])
    assert meta["arch_kwargs"]["guides"] == 1 and model.head.in_channels == 6


def test_environment_sets_tiling_for_every_runner(monkeypatch):
    monkeypatch.setenv("RESTOREAGENT_TILE", "0")
    assert TorchRunner(_LocalNet(), tile=256).tile == 0
    monkeypatch.setenv("RESTOREAGENT_TILE", "128")
    assert TorchRunner(_LocalNet(), tile=0).tile == 128


def test_curvenet_inverts_the_darkening_given_its_curve(monkeypatch):
    """The curve operator itself: with the true gamma and gain it undoes the generator's low light."""
    from restoreagent.tools.learned.nets import CurveNet

    clean = _photo("astronaut")
    dark = apply_degradation(clean, "low_light", {"gamma": 2.0, "scale": 0.4})
    net = CurveNet()
    monkeypatch.setattr(net, "curve", lambda x: (torch.tensor([2.0]), torch.tensor([0.4])))
    out = TorchRunner(net, tile=0)(dark)
    assert peak_signal_noise_ratio(clean, out, data_range=1.0) > 40
    assert peak_signal_noise_ratio(clean, dark, data_range=1.0) < 15


@pytest.mark.parametrize("shape", [(3, 1000), (1000, 5), (3, 40)])
def test_a_thin_image_is_tiled_along_its_long_side_only(shape, monkeypatch):
    """A strip within the tile on one side: tiles span its short side and are as long as one
    square tile's area allows; the result equals the untiled one for a local network."""
    monkeypatch.delenv("RESTOREAGENT_TILE", raising=False)  # `run --tile` sets it in-process
    img = np.random.default_rng(1).random((*shape, 3), dtype=np.float32)
    net = _LocalNet()
    runner = TorchRunner(net, multiple=8, tile=64, overlap=16)
    th, tw = runner.tile_shape(*shape)
    short = min(shape)
    assert min(th, tw) == short and max(th, tw) == min(max(shape), 64 * 64 // 8)
    np.testing.assert_allclose(runner(img), TorchRunner(net, multiple=8, tile=0)(img), atol=1e-5)
    assert TorchRunner(net, tile=64, overlap=16).tile_shape(100, 100) == (64, 64)
