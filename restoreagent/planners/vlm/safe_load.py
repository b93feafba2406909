"""Refuse a planner folder whose weight files are not safe, loadable tensors, in one line.

transformers would otherwise end in a traceback: a pickle in ``pytorch_model.bin`` fails torch's
``weights_only`` loader with a message suggesting ``weights_only=False`` (which would run the
pickle's code), and a corrupt ``model.safetensors`` fails inside the safetensors parser. Each file is
checked the way it will be read: safetensors by parsing its header (cheap: no tensor data is read),
torch files by ``torch.load(weights_only=True)``, which never runs code from the file.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import RestoreAgentError

TORCH_SUFFIXES = (".bin", ".pt", ".pth")


def check_weight_files(folder) -> None:
    """Raise a one-line :class:`RestoreAgentError` naming the first unsafe or unreadable weight file."""
    folder = Path(folder)
    if not folder.is_dir():
        return  # a hub name: nothing local to check
    for f in sorted(folder.iterdir()):
        if f.suffix == ".safetensors":
            _check_safetensors(f)
        elif f.suffix in TORCH_SUFFIXES:
            _check_torch_file(f)


def _check_safetensors(path: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as e:  # safetensors raises its own error type for every kind of damage
        raise RestoreAgentError(f"{path}: refusing to load: not a valid safetensors file ({_first_line(e)})") from None


def _check_torch_file(path: Path) -> None:
    import pickle

    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message would suggest weights_only=False: never
        raise RestoreAgentError(
            f"{path}: refusing to load: the file holds Python objects besides tensors, and loading them "
            "could run code (save the weights as safetensors)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise RestoreAgentError(f"{path}: refusing to load: damaged tensor file ({_first_line(e)[:100]})") from None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
