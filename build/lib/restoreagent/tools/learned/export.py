"""Weight files of the project's learned tools: safetensors with their description inside.

A file holds float16 tensors (half the size; the runner computes in float32 on CPU) and, in the
safetensors metadata, ``restoreagent`` = JSON with the architecture (``arch``,
``arch_kwargs``), the task, the degradation and severity ranges it was trained for, its
training data and validation PSNR. :func:`load_tool_network` rebuilds the network from the file
alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .nets import build_network

META_KEY = "restoreagent"


def save_tool_weights(model: torch.nn.Module, path, meta: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, default=str)})
    os.replace(tmp, path)
    return path


def read_tool_meta(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get(META_KEY, "{}"))


def load_tool_network(path) -> tuple[torch.nn.Module, dict]:
    """The network stored in ``path`` (float32, eval mode) and its metadata."""
    meta = read_tool_meta(path)
    if "arch" not in meta:
        raise ValueError(f"{path}: not a restoreagent tool weight file (no architecture in its metadata)")
    model = build_network(meta["arch"], **meta.get("arch_kwargs", {}))
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval(), meta
