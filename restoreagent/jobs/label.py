"""The ``label`` and ``build-sft`` jobs: their settings, defaults and help texts.

Run: ``restoreagent label ...`` / ``restoreagent dataset build-sft ...`` (flags generated from these
classes) or ``restoreagent job label --config FILE key=value``. Small: ``configs/smoke/label.yaml``,
``configs/smoke/build-sft.yaml``. The logic: :mod:`restoreagent.labeling`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import option
from ..errors import RestoreAgentError
from ..splits import DEV_SPLITS, TRAIN_FOLDERS


def load_toolset_file(path) -> dict[str, list[str]]:
    """A YAML file mapping task -> [tool, ...]."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RestoreAgentError(f"{path}: cannot read the toolset ({e})") from None
    if not isinstance(raw, dict):
        raise RestoreAgentError(f"{path}: a toolset is a mapping task -> [tool, ...]")
    return raw


@dataclass(kw_only=True)
class BackendOptions:
    """Where the per-sample work runs (same seed, same output whatever is chosen)."""

    workers: int = option(1, "K local processes (1: this process)", metavar="K")
    backend: str = option("local", "local processes, or Ray tasks (pip install 'restoreagent[ray]')", choices=("local", "ray"))
    ray_address: str | None = option(None, "Ray cluster to join, e.g. 127.0.0.1:6379 (default: start a local one); a cluster "
                                     "with token auth (Ray's default) needs RAY_AUTH_MODE=token and its token "
                                     "(~/.ray/auth_token or RAY_AUTH_TOKEN)", metavar="ADDR")


@dataclass(kw_only=True)
class LabelConfig(BackendOptions):
    """Clean photos -> degraded crops -> every candidate pipeline run and scored (a dataset)."""

    images: tuple[str, ...] = option(TRAIN_FOLDERS, "folder(s) of clean images (train photos; never a dev split)", nargs=True,
                                     metavar="DIR")
    out: str = option(help="output folder (created; resumed when it exists)", metavar="DATASET")
    samples: int = option(help="labeled samples", metavar="N")
    seed: int = option(0, "seed of everything random (same seed, same dataset)")
    crop: int | None = option(128, "square crop side in pixels (0: the whole image; the cost grows fast with it)", metavar="PX")
    crop_mode: str = option("random", "random crop per sample, or the centre (like the benchmark)", choices=("random", "center"))
    combos_file: str | None = option(None, "one combination per line, e.g. 'noise + jpeg' (cycled); default: "
                                     "min..max random degradations", flags=("--combos", "--combos-file"), metavar="FILE")
    min_degradations: int = option(1, "fewest degradations per sample", metavar="K")
    max_degradations: int = option(4, "most degradations per sample", metavar="K")
    degradations: tuple[str, ...] | None = option(None, "comma list of degradations to draw from (default: every core "
                                                  "degradation with a tool; extensions such as snow only when named)", metavar="LIST")
    toolset: Any = option(None, "task -> [tools] to search: a mapping, or a YAML file of one (default: every available "
                          "candidate tool)", metavar="FILE")
    metrics: tuple[str, ...] | None = option(None, "comma list of psnr,ssim,lpips,dists (auto: psnr, ssim + lpips, dists "
                                             "when their weights are present)", none_word="auto")
    shard_size: int = option(64, "samples per output shard", metavar="M")
    allow_dev_split: bool = option(False, "allow labeling a dev split (the benchmark's photos, e.g. for analysis)")
    forbid: tuple[str, ...] = option(DEV_SPLITS, "image folder names refused unless allow_dev_split", cli=False)
    card: bool = option(True, "write README.md and card.png when done", cli=False)
    accept_tool_changes: bool = option(False, "resume although a tool's code changed since the run started (mixes label versions)")

    def __post_init__(self):
        if isinstance(self.images, str | Path):
            self.images = (str(self.images),)
        if isinstance(self.toolset, str | Path):
            self.toolset = load_toolset_file(self.toolset)
        elif self.toolset is not None:
            self.toolset = {k: list(v) if isinstance(v, list | tuple) else v for k, v in dict(self.toolset).items()}

    @property
    def refused(self) -> tuple[str, ...]:
        """Image folder names this run refuses."""
        return () if self.allow_dev_split else tuple(self.forbid)


COMPACT_OUT = "labels/restoreagent-labels-v1"


@dataclass(kw_only=True)
class CompactLabelConfig(BackendOptions):
    """Grow a compact labeled dataset (no pixels: photo + crop + degradation record + scores), resumably."""

    images: tuple[str, ...] = option(TRAIN_FOLDERS, "folder(s) of clean images (train photos; never a dev split)", nargs=True,
                                     metavar="DIR")
    out: str = option(COMPACT_OUT, "the dataset folder (created; grown when it exists)", metavar="DATASET")
    samples: int = option(23000, "samples the dataset should hold (a run continues up to it)", metavar="N")
    labeler: str = option("beam", "beam (cheap, the evaluated candidates only) or exhaustive (every candidate)",
                          choices=("beam", "exhaustive"))
    beam_width: int = option(2, "partial pipelines kept per depth (beam labeler)", metavar="B")
    polish: int = option(3, "hill-climbing moves after the beam (beam labeler)", metavar="P")
    seed: int = option(0, "seed of everything random (same seed, same dataset)")
    crop: int | None = option(128, "square crop side in pixels", metavar="PX")
    min_degradations: int = option(1, "fewest core degradations per sample", metavar="K")
    max_degradations: int = option(4, "most core degradations per sample", metavar="K")
    snow_every: int = option(42, "every N-th sample is a snow-extension combination (0: none); 42 keeps the default "
                             "build's 10000 : 240 proportion", metavar="N")
    snow_combos: str = option("configs/bench/snow_combos.txt", "the snow extension's combinations (cycled)", metavar="FILE")
    toolset: Any = option(None, "task -> [tools] to search (default: every available candidate tool)", metavar="FILE")
    metrics: tuple[str, ...] | None = option(None, "comma list of psnr,ssim,lpips,dists (auto)", none_word="auto")
    shard_size: int = option(100, "samples per committed shard file", metavar="M")
    allow_dev_split: bool = option(False, "allow labeling a dev split")
    accept_tool_changes: bool = option(False, "grow although a tool's code changed since the dataset was started")

    def __post_init__(self):
        if isinstance(self.images, str | Path):
            self.images = (str(self.images),)
        if isinstance(self.toolset, str | Path):
            self.toolset = load_toolset_file(self.toolset)
        if self.beam_width < 1 or self.polish < 0 or self.snow_every < 0:
            raise RestoreAgentError("beam_width must be >= 1, polish and snow_every >= 0")


@dataclass(kw_only=True)
class SFTConfig(BackendOptions):
    """Labeled trees -> the planner's image/prompt/target pairs in RestoreAgent's five scenarios."""

    labeled: str = option(help="a folder written by `restoreagent label`", positional=True, metavar="LABELED")
    out: str = option(help="output folder (a datasets DatasetDict: load_from_disk)", metavar="SFT")
    seed: int = option(0, "seed of the scenario draws and the validation split")
    val_fraction: float = option(0.05, "share of labeled samples (with all their pairs) held out as `validation`; they "
                                 "are crops of train photos, never of a dev split")
    clean_stop_prob: float = option(0.1, "probability per sample of a 'stop' pair on the clean crop",
                                    flags=("--clean-stop-prob", "--clean-stop"), metavar="P")
    rollbacks_per_sample: int = option(1, "rollback (+ after-rollback) pairs per sample when the tree has harmful steps",
                                       flags=("--rollbacks-per-sample", "--rollbacks"), metavar="R")
    detours_per_sample: int = option(1, "partial-plan pairs off the best path per sample",
                                     flags=("--detours-per-sample", "--detours"), metavar="D")
    followups: bool = option(True, "after a rollback, also the next question on that path", cli=False)
    rollback_psnr_db: float = option(0.5, "a step is harmful when it loses more than this PSNR (dB) ...", cli=False)
    rollback_ssim: float = option(0.005, "... and more than this SSIM against its parent", cli=False)
    images: tuple[str, ...] | None = option(None, "where the clean images are now, if moved since labeling", nargs=True, metavar="DIR")
    shard_size: int = option(256, "pairs per build shard", metavar="M")

    def __post_init__(self):
        if self.rollbacks_per_sample < 0 or self.detours_per_sample < 0:
            raise RestoreAgentError("--rollbacks and --detours must be >= 0")
