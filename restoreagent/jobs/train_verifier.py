"""The ``verify-data`` and ``train-verifier`` jobs: their settings, defaults and help texts.

Run: ``restoreagent job verify-data [key=value ...]`` then ``restoreagent job train-verifier``.
Small: ``configs/smoke/verify-data.yaml`` and ``configs/smoke/train-verifier.yaml``. The logic:
:mod:`restoreagent.planners.verify.data` (fresh samples, the candidates the ``verify`` planner
would try, their outputs' features and true scores; shards, resumable) and
:mod:`restoreagent.planners.verify.train` (the verifier fitted listwise, measured on held-out photos).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option
from ..splits import TRAIN_FOLDERS


@dataclass
class VerifyDataConfig:
    """Make the verifier's training data: candidates run on fresh degraded train crops and scored."""

    out: str = option("runs/verify/data_v2", "folder of the shards (grown when it exists)")
    samples: int = option(4700, "samples the folder should hold (a run continues up to it)", metavar="N")
    seed: int = option(101, "seed of the samples (not the committed labels' 0: the plan scorer trained on those)")
    images: tuple[str, ...] = option(TRAIN_FOLDERS, "train photo folders (never the dev split)")
    crop: int = option(128, "square crop side in pixels", metavar="PX")
    n_sets: int = option(3, "likely degradation sets per sample (the detector's decision and its nearest flips)")
    per_set: int = option(3, "the plan scorer's best pipelines run per set (training may use fewer)")
    val_every: int = option(10, "photos held out for validation: 1 in N, by a hash of the photo's name (the plan "
                            "scorer's rule)")
    shard_size: int = option(100, "samples per shard file", metavar="M")
    pixels: bool = option(False, "also keep the input and the candidates' outputs as 8-bit pixels (about 0.5 MB a "
                          "sample: the pixel verifier's training data)")
    prefixes: bool = option(False, "also score every shorter prefix of the proposed plans (their outputs are computed "
                            "on the way: no extra tool calls; measured, not shipped: docs/benchmarks.md)")
    tone: float = option(0.0, "tone augmentation of the clean crops before they are degraded: each gets a gamma "
                         "curve x^g with log(g) uniform in [-tone, tone] (0: off), so the photos' brightness and "
                         "highlights vary beyond the train folders' own")
    workers: int = option(1, "processes (one per core)")
    detector: str | None = option(None, "detector folder (null: the shipped one)")
    ranker: str | None = option(None, "plan scorer folder (null: the shipped one)")

    def __post_init__(self):
        if not 0.0 <= self.tone <= 1.0:
            from ..errors import RestoreAgentError

            raise RestoreAgentError(f"tone={self.tone}: use a value in [0, 1] (0: no tone augmentation)")


@dataclass
class VerifierTrainConfig:
    """Train the verifier on verify-data's samples; measure it on the held-out photos' samples."""

    data: tuple[str, ...] = option(("runs/verify/data_v2",), "verify-data's folder(s), made with the same settings",
                                   nargs=True)
    n_sets: int = option(3, "degradation sets the planner tries (at most verify-data's n_sets)")
    per_set: int = option(3, "pipelines per set the planner runs (at most verify-data's per_set)")
    embedding: bool = option(False, "also read the detector's tile embeddings of the outputs and the input (256 "
                             "numbers each; needs data that kept them)")
    no_reference: bool = option(False, "also read no-reference measures of the outputs and the input (noise level, "
                                "haze floor, saturation; needs data that kept them)")
    prefixes: bool = option(False, "the shorter prefixes of the proposed plans are candidates too (needs data made "
                            "with prefixes=true)")
    consistency: bool = option(True, "also read each output checked against the input: what the steps removed (is it "
                               "white, off the edges?), coarse structure kept, block edges left (data made since "
                               "they are kept, or with pixels=true)")
    pixels: bool = option(False, "also read the outputs' pixels with a small CNN (needs data made with pixels=true)")
    pixel_width: int = option(32, "channels of the CNN's first layer (pixels=true)")
    pixel_dim: int = option(24, "numbers the CNN passes to the MLPs per candidate (pixels=true)")
    crop: int = option(64, "square crop the CNN trains on (pixels=true; it reads the whole view when planning)", metavar="PX")
    batch: int = option(128, "samples per training batch (32 is the pixel verifier's)")
    hidden: int = option(64, "width of each MLP")
    members: int = option(10, "MLPs in the ensemble (their scores are averaged; fewer gave noisier picks)")
    dropout: float = option(0.1, "dropout inside each MLP")
    epochs: int = option(60, "passes over the training samples")
    lr: float = option(2.0e-3, "peak AdamW learning rate (one-cycle)")
    weight_decay: float = option(1.0e-3, "AdamW weight decay")
    loss: str = option("regret", "regret: the expected regret of the softmax pick (a bad pick costs what it loses); "
                       "listwise: the softmax fitted to the balanced scores' softmax at temperature tau",
                       choices=("regret", "listwise"))
    tau: float = option(1.0, "temperature of the listwise targets (balanced-score units; loss=listwise)")
    seed: int = option(0, "seed of the weights and batches")
    threads: int | None = option(1, "torch CPU threads")
    output_dir: str = option("runs/verify/default", "summary.json of the run")
    export: str | None = option("restoreagent/assets/verifier/verifier.safetensors", "weight file to write (null: none)")

    def __post_init__(self):
        if isinstance(self.data, str):
            self.data = (self.data,)
        if self.loss not in ("regret", "listwise"):
            from ..errors import RestoreAgentError

            raise RestoreAgentError(f"loss={self.loss}: use regret or listwise")
