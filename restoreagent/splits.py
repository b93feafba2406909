"""Which photos train, which validate and which measure: the one place that says it.

- ``TRAIN_FOLDERS``: the clean photos every training job draws from (learned tools, the planner's
  stage-1 data, labeled datasets). Relative to the repository root (``../shared`` is the project's
  shared data folder, beside the checkout).
- validation is never a benchmark split: a job holds out every ``VAL_EVERY``-th train photo
  (:func:`split_files`, sorted order) and validates on those; labeled/SFT datasets hold out
  labeled samples (crops of train photos) by sample id.
- ``DEV_SPLITS``: folder names the benchmark measures on (cbsd68); the labeler refuses them.
"""

from __future__ import annotations

from pathlib import Path

DATA = "../shared/data/images"
TRAIN_FOLDERS = (f"{DATA}/urban100_crops", f"{DATA}/sun_hays80", f"{DATA}/set14")
DEV_SPLITS = ("cbsd68",)
VAL_EVERY = 12
VALIDATION_RULE = f"every {VAL_EVERY}th photo (sorted) of the train folders, held out from training"


def split_files(files: list[Path], val_every: int = VAL_EVERY) -> tuple[list[Path], list[Path]]:
    """(train, validation): every ``val_every``-th file held out (deterministic, by sorted order);
    no hold-out when there are fewer than ``2 * val_every`` files."""
    val = files[::val_every] if val_every and len(files) >= 2 * val_every else []
    train = [f for f in files if f not in set(val)] or files
    return train, val
