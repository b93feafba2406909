"""Which photos train, which validate and which measure: the one place that says it.

- ``TRAIN_FOLDERS``: the clean photos every training job draws from (learned tools, the planner's
  stage-1 data, labeled datasets). Relative to the repository root (``../shared`` is the project's
  shared data folder, beside the checkout).
- validation is never a benchmark split: a job holds out every ``VAL_EVERY``-th train photo
  (:func:`split_files`, sorted order) and validates on those; labeled/SFT datasets hold out
  labeled samples (crops of train photos) by sample id. The degradation detector holds out a
  fraction of the photos chosen by a hash of the file name (:func:`split_by_name_hash`): its
  validation set then stays the same when photos are added to or removed from the folders.
- ``DEV_SPLITS``: folder names the benchmark measures on (cbsd68); the labeler refuses them.
"""

from __future__ import annotations

import hashlib
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


def split_by_name_hash(files, val_fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, validation) by a hash of each file name, in [0, 1): below ``val_fraction`` validates.

    With at least two files and a positive fraction, the file of lowest hash is held out in any case.
    """

    def h(p: Path) -> float:
        return int(hashlib.sha256(p.name.encode()).hexdigest()[:8], 16) / 0x100000000

    ps = sorted(Path(x) for x in files)
    val = [p for p in ps if h(p) < val_fraction]
    if not val and val_fraction > 0 and len(ps) > 1:
        val = [min(ps, key=h)]
    train = [p for p in ps if p not in val]
    return train, val
