"""Weight files of the project's own networks: safetensors with a JSON provenance record inside.

One home for the format the learned tools, the fusion network and the fusion's mix heads share:
the tensors, and under the metadata key ``restoreagent`` a JSON object (architecture, data, scores).
Written atomically (readers never see half a file); read without executing anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

META_KEY = "restoreagent"


def save_weights(state: dict[str, torch.Tensor], path, meta: dict, dtype: torch.dtype | None = None) -> Path:
    """Write ``state`` (cast to ``dtype`` when given) and ``meta`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype or v.dtype).contiguous() for k, v in state.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, default=str)})
    os.replace(tmp, path)
    return path


def read_meta(path) -> dict:
    """The JSON record of a weight file written by :func:`save_weights` ({} when it has none)."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get(META_KEY, "{}"))
