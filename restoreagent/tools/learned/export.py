"""Weight files of the project's learned tools: safetensors with their description inside.

A file holds float16 tensors (half the size; the runner computes in float32 on CPU) and, in the
safetensors metadata, ``restoreagent`` = JSON with the architecture (``arch``,
``arch_kwargs``), the task, the degradation and severity ranges it was trained for, its
training data and validation PSNR. :func:`load_tool_network` rebuilds the network from the file
alone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from ...weights_file import read_meta, save_weights
from .nets import build_network


def save_tool_weights(model: torch.nn.Module, path, meta: dict) -> Path:
    return save_weights(model.state_dict(), path, meta, torch.float16)


def read_tool_meta(path) -> dict:
    return read_meta(path)


def load_tool_network(path) -> tuple[torch.nn.Module, dict]:
    """The network stored in ``path`` (float32, eval mode) and its metadata."""
    meta = read_tool_meta(path)
    if "arch" not in meta:
        raise ValueError(f"{path}: not a restoreagent tool weight file (no architecture in its metadata)")
    model = build_network(meta["arch"], **meta.get("arch_kwargs", {}))
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval(), meta
