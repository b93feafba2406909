"""The fusion network's weight files: safetensors (float16) with its widths and provenance inside.

``fusion.safetensors`` blends candidates of any plan. A **specialist** (``fusion_<tasks>.safetensors``,
e.g. ``fusion_dejpeg+denoise.safetensors``) was fine-tuned from it on one combination's candidate
sets only (its metadata's ``tasks``); ``run --fuse`` uses the specialist of the plan's task set when
one is shipped, else the general network (docs/fusion.md says what each gains).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import RestoreAgentError
from ..weights_file import read_meta, save_weights
from .model import FusionNet


def shipped_weights() -> Path:
    return Path(str(resources.files("restoreagent") / "assets" / "fusion" / "fusion.safetensors"))


def specialist_name(tasks) -> str:
    """File name of the specialist for a task set (order does not matter)."""
    return f"fusion_{'+'.join(sorted(set(tasks)))}.safetensors"


def weights_for_tasks(tasks) -> Path:
    """The shipped specialist for this task set when there is one, else the general weights."""
    special = shipped_weights().with_name(specialist_name(tasks))
    return special if special.is_file() else shipped_weights()


def save_fusion_weights(model: FusionNet, path, meta: dict) -> Path:
    return save_weights(model.state_dict(), path, {"widths": list(model.widths), **meta}, torch.float16)


def read_fusion_meta(path) -> dict:
    return read_meta(path)


@functools.cache
def _load(path: str) -> FusionNet:
    p = Path(path)
    if not p.is_file():
        raise RestoreAgentError(f"{p}: fusion weights not found (train them: restoreagent job train-fusion)")
    try:
        meta = read_fusion_meta(p)
        model = FusionNet(tuple(meta.get("widths", (24, 48, 64))))
        model.load_state_dict({k: v.float() for k, v in load_file(str(p)).items()})
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as e:
        raise RestoreAgentError(f"{p}: not a fusion weight file ({e})") from None
    return model.eval()


def load_fusion(path=None) -> FusionNet:
    """The fusion network (float32, eval mode) from ``path`` or the shipped weights; loaded once per path."""
    return _load(str(Path(path) if path is not None else shipped_weights()))
