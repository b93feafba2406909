"""Loading a cached model file safely and turning it into a same-size ``image -> image`` tool.

- **Safe loading only**: ``.safetensors`` through safetensors; ``.pth/.pt/.ckpt/.bin`` through
  ``torch.load(map_location="cpu", weights_only=True)``, which refuses pickles holding arbitrary
  Python objects; TorchScript is never loaded. The file's SHA-256 is checked against the
  model list before anything is read.
- **Architectures**: spandrel (``loader: spandrel``; the model list names the architecture, whose
  detector must accept the state dict) or the project's own DehazeFormer-MCT
  (``loader: dehazeformer_mct``).
- **Running**: :class:`~restoreagent.tools.learned.runner.TorchRunner` (device, float16 when the
  architecture supports it, padding, tiling).
- **Super-resolution as a same-size tool**: the project's ``low_resolution`` degradation keeps
  the image size (bicubic down by s, bicubic back up), so an x``s`` model becomes a same-size tool
  by shrinking its input by s with the same bicubic kernel, running the model (back to about the
  original size) and resizing the result to exactly (H, W) (:class:`SameSizeSR`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ..tools.learned.runner import TorchRunner, half_dtype, resolve_device
from .archs.dehazeformer import DehazeFormerMCT, config_from_state_dict
from .hub import ChecksumError, ZooError, sha256_file

WEIGHTS_ONLY_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def load_state_dict(path) -> dict:
    """Tensors of a weight file, without executing anything it contains."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise ZooError(f"{path}: not a readable safetensors file ({e})") from None
    if suffix in WEIGHTS_ONLY_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError for disallowed globals, RuntimeError for junk
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ZooError(
                f"{path}: refused: not a plain weight file that loads with weights_only=True ({first})"
            ) from None
        if not isinstance(state, dict):
            raise ZooError(f"{path}: expected a state dict, found {type(state).__name__}")
        return state
    raise ZooError(f"{path}: unsupported weight file type {suffix!r} (use .safetensors or .pth)")


def _unwrap(state: dict) -> dict:
    """The tensors of a training checkpoint ({'params_ema': ...}, {'state_dict': ...}, 'module.' prefixes)."""
    for key in ("params_ema", "params", "state_dict", "model", "net"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def _pad(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if not ph and not pw:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class SpandrelNet(nn.Module):
    """A spandrel model descriptor as a plain module: pads to the size it needs, crops back.

    ``noise_level`` (0-255) is the noise map a DRUNet denoiser is conditioned on.
    """

    def __init__(self, descriptor, noise_level: float | None = None):
        super().__init__()
        self.net = descriptor.model
        self.descriptor = descriptor
        self.scale = descriptor.scale
        self.noise_level = noise_level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        req = self.descriptor.size_requirements
        m = req.multiple_of
        th, tw = max(h, req.minimum), max(w, req.minimum)
        th, tw = -(-th // m) * m, -(-tw // m) * m
        if req.square:
            th = tw = max(th, tw)
        x = _pad(x, th, tw)
        if self.noise_level is not None:
            level = x.new_full((x.shape[0], 1, th, tw), self.noise_level / 255.0)
            y = self.net(torch.cat([x, level], dim=1))
        else:
            y = self.descriptor(x)
        return y[..., : h * self.scale, : w * self.scale]


class DehazeFormerNet(nn.Module):
    """DehazeFormer-MCT on [0, 1] images (the network works in [-1, 1])."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = model

    def forward(self, x):
        return (self.net(x * 2 - 1).clamp(-1, 1) + 1) / 2


def _spandrel_descriptor(state: dict, architecture: str):
    from spandrel import MAIN_REGISTRY, canonicalize_state_dict

    support = MAIN_REGISTRY.get(architecture)
    if support is None:
        try:
            from spandrel_extra_arches import EXTRA_REGISTRY
        except ImportError:
            raise ZooError(
                f"architecture {architecture!r} is not in spandrel; it may be in spandrel_extra_arches "
                "(pip install 'restoreagent[zoo-extra]')"
            ) from None
        support = EXTRA_REGISTRY.get(architecture)
        if support is None:
            raise ZooError(f"architecture {architecture!r} is in neither spandrel nor spandrel_extra_arches")
    state = canonicalize_state_dict(state)
    arch = support.architecture
    if not arch.detect(state):
        raise ZooError(
            f"the weight file does not hold a {architecture} model (spandrel's detector refused it)"
        )
    try:
        return arch.load(state)
    except Exception as e:
        raise ZooError(f"loading the {architecture} weights failed: {e}") from None


def _resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bicubic resize of float RGB, channel by channel (PIL's antialiased kernel, as the degradation)."""
    out = np.empty((h, w, image.shape[2]), np.float32)
    for c in range(image.shape[2]):
        ch = Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32))
        out[..., c] = np.asarray(ch.resize((w, h), Image.Resampling.BICUBIC))
    return out


class SameSizeSR:
    """An x``scale`` super-resolution model as a same-size tool (see the module docstring)."""

    def __init__(self, runner, scale: int):
        self.runner, self.scale = runner, scale

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        sh, sw = max(1, round(h / self.scale)), max(1, round(w / self.scale))
        out = self.runner(_resize(image, sw, sh))
        if out.shape[:2] != (h, w):
            out = _resize(out, w, h)
        return out


def _default_tile(tiling) -> int:
    from spandrel import ModelTiling

    return {ModelTiling.INTERNAL: 0, ModelTiling.DISCOURAGED: 1024}.get(tiling, 512)


def build_hub_tool(
    weights: str,
    loader: str,
    architecture: str,
    scale: int = 1,
    sha256: str | None = None,
    device: str = "auto",
    half: bool = False,
    tile: int | None = None,
    overlap: int = 32,
    verify: bool = True,
    noise_level: float | None = None,
    size: int = 256,
):
    """``image -> image`` (same size) for a listed model's cached file (registry builder)."""
    path = Path(weights)
    if verify and sha256:
        digest = sha256_file(path)
        if digest != sha256:
            raise ChecksumError(
                f"{path}: sha256 {digest} is not the model list's {sha256}; delete it and download it again"
            )
    state = _unwrap(load_state_dict(path))
    half_ok = True
    if loader == "spandrel":
        descriptor = _spandrel_descriptor(state, architecture)
        if descriptor.scale != scale:
            raise ZooError(f"{path}: the model upscales x{descriptor.scale}, the model list says x{scale}")
        if descriptor.input_channels != 3 or descriptor.output_channels != 3:
            raise ZooError(
                f"{path}: not an RGB model ({descriptor.input_channels} -> {descriptor.output_channels} channels)"
            )
        if noise_level is not None and architecture != "DRUNet":
            raise ZooError(f"noise_level only applies to DRUNet models, not {architecture}")
        if architecture == "DRUNet" and noise_level is None:
            noise_level = 15.0
        model = SpandrelNet(descriptor, noise_level)
        tile = _default_tile(descriptor.tiling) if tile is None else tile
        half_ok = {torch.float16: descriptor.supports_half, torch.bfloat16: descriptor.supports_bfloat16}.get(
            half_dtype(resolve_device(device)), True
        )
    elif loader == "dehazeformer_mct":
        try:
            net = DehazeFormerMCT(size=size, **config_from_state_dict(state))
            net.load_state_dict(state, strict=True)
        except (KeyError, ValueError, RuntimeError) as e:
            raise ZooError(f"{path}: not a DehazeFormer-MCT weight file ({str(e).splitlines()[0]})") from None
        model = DehazeFormerNet(net)
        tile = 0 if tile is None else tile  # the network sees the whole image at 256x256
    else:
        raise ZooError(f"unknown loader {loader!r}")
    runner = TorchRunner(
        model, scale=scale, multiple=1, device=device, half=half, tile=tile, overlap=overlap, half_ok=half_ok
    )
    return SameSizeSR(runner, scale) if scale > 1 else runner
