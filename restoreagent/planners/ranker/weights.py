"""The plan scorer's folder: ``model.safetensors`` (float16) + ``ranker.json`` (vocabulary, sizes, provenance)."""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path

from ...errors import RestoreAgentError
from ...imageio import atomic_write_text


def shipped_folder() -> Path:
    return Path(str(resources.files("restoreagent") / "assets" / "ranker"))


def save_ranker(folder, model, encoder, info: dict | None = None) -> Path:
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    tmp = folder / "model.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / "model.safetensors")
    os.chmod(folder / "model.safetensors", 0o644)  # shipped as package data: readable by every user
    meta = {"config": model.cfg.to_dict(), "vocabulary": encoder.vocabulary, "tasks": encoder.tasks, "info": info or {}}
    atomic_write_text(folder / "ranker.json", json.dumps(meta, indent=1, default=str))
    return folder


@functools.cache
def _load(folder: str):
    import torch
    from safetensors.torch import load_file

    from .features import PlanEncoder
    from .model import PlanScorerNet, ScorerConfig

    f = Path(folder)
    if not (f / "ranker.json").is_file():
        raise RestoreAgentError(f"{f}: no plan scorer here (missing ranker.json; train one: restoreagent job train-ranker)")
    try:
        meta = json.loads((f / "ranker.json").read_text())
        model = PlanScorerNet(ScorerConfig(**meta["config"]))
        model.load_state_dict({k: v.float() for k, v in load_file(str(f / "model.safetensors")).items()})
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        raise RestoreAgentError(f"{f}: not a plan scorer folder ({e})") from None
    torch.set_grad_enabled(True)  # loading must not change the caller's autograd state
    return model.eval(), PlanEncoder(meta["vocabulary"], meta["tasks"]), meta


def load_ranker(folder=None):
    """(network, plan encoder, metadata) of a scorer folder, default the shipped one; loaded once per folder."""
    return _load(str(Path(folder) if folder is not None else shipped_folder()))
