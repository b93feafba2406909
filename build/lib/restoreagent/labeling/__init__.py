"""Training data at scale: the labeler, its backends, the SFT builder and dataset cards.

- :func:`label_dataset` (``restoreagent label``): clean images -> degraded samples -> every
  candidate pipeline scored (prefix tree) -> a sharded, resumable ``datasets`` folder.
- :func:`build_sft` (``restoreagent dataset build-sft``): labeled trees -> the planner's
  image/prompt/target pairs in RestoreAgent's five scenarios (a ``DatasetDict`` on disk).
- backends: this process, K local processes, or Ray; same seed, same dataset.

Imports are lazy: importing this package does not import datasets, torch or ray.
"""

from __future__ import annotations

__all__ = ["LabelConfig", "SFTConfig", "build_sft", "label_dataset", "load_labeled", "load_sft", "write_labeled_card"]


def __getattr__(name):
    if name in ("LabelConfig", "label_dataset", "load_labeled"):
        from . import labeler

        return getattr(labeler, name)
    if name in ("SFTConfig", "build_sft", "load_sft"):
        from . import sft

        return getattr(sft, name)
    if name == "write_labeled_card":
        from .card import write_labeled_card

        return write_labeled_card
    raise AttributeError(name)
