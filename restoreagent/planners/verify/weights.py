"""The verifier's weight file: safetensors (float32, it is small) with its configuration inside."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from ...errors import RestoreAgentError
from ...weights_file import read_meta, save_weights


def shipped_file() -> Path:
    return Path(str(resources.files("restoreagent") / "assets" / "verifier" / "verifier.safetensors"))


def save_verifier(path, model, n_sets: int, per_set: int, info: dict | None = None) -> Path:
    import os

    meta = {"config": model.cfg.to_dict(), "n_sets": n_sets, "per_set": per_set, "info": info or {}}
    path = save_weights(model.state_dict(), path, meta)
    os.chmod(path, 0o644)  # shipped as package data: readable by every user
    return path


@functools.cache
def _load(path: str):
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .model import VerifierConfig, VerifierNet

    p = Path(path)
    if not p.is_file():
        raise RestoreAgentError(f"{p}: no verifier weights here (train them: restoreagent job train-verifier)")
    try:
        meta = read_meta(p)
        model = VerifierNet(VerifierConfig(**meta["config"]))
        model.load_state_dict(load_file(str(p)))
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as e:
        raise RestoreAgentError(f"{p}: not a verifier weight file ({e})") from None
    torch.set_grad_enabled(True)  # loading must not change the caller's autograd state
    return model.eval(), meta


def load_verifier(path=None):
    """(network, metadata) of a verifier file, default the shipped one; loaded once per file."""
    return _load(str(Path(path) if path is not None else shipped_file()))
