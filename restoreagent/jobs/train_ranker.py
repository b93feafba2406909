"""The ``train-ranker`` job: its settings, defaults and help texts.

Run: ``restoreagent job train-ranker [key=value ...]`` (or ``python train/train_ranker.py``). Small:
``configs/smoke/train-ranker.yaml``. The logic: :mod:`restoreagent.planners.ranker.train` (the
labeled records' features appended to ``table``, then the plan scorer trained on every evaluated
candidate's score and exported to ``export``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option
from ..splits import TRAIN_FOLDERS


@dataclass
class RankerTrainConfig:
    """Train the plan scorer (image, pipeline) -> score on the compact labeled dataset."""

    labels: str = option("labels/restoreagent-labels-v1", "the compact labeled dataset (restoreagent job label-compact)")
    images: tuple[str, ...] = option(TRAIN_FOLDERS, "where the labeled records' photo folders are")
    table: str = option("runs/ranker/features.npz", "features of the labeled records (appended as the labels grow)")
    limit: int | None = option(None, "use only the first N labeled samples")
    fraction: float = option(1.0, "train on this random fraction of the training samples (the scaling curve)")
    val_every: int = option(10, "photos held out for validation: 1 in N, by a hash of the photo's name")
    loss: str = option("listwise", "listwise: softmax cross-entropy against the candidates' scores at temperature tau; "
                       "pairwise: a logistic loss on every pair of one sample's candidates")
    negatives: int = option(16, "pipelines the labeler did not evaluate added to each sample's list, below its worst "
                            "candidate (the scorer ranks every pipeline at planning time)")
    margin: float = option(1.0, "how far below the worst evaluated candidate those are placed (balanced-score units)")
    tau: float = option(0.5, "temperature of the listwise targets (balanced-score units)")
    hidden: int = option(128, "width of the scorer's towers")
    dropout: float = option(0.3, "dropout on the towers' outputs (the scorer overfits a few thousand samples without it)")
    epochs: int = option(12, "passes over the training samples (validation stops improving after about 12 on 5k samples)")
    batch_size: int = option(64, "samples per step (each with all its candidates)")
    lr: float = option(2.0e-3, "peak AdamW learning rate (one-cycle)")
    weight_decay: float = option(1.0e-2, "AdamW weight decay")
    eval_every: int = option(5, "epochs between validations")
    seed: int = option(0, "seed of the weights, batches and the fraction drawn")
    threads: int | None = option(None, "torch CPU threads")
    workers: int = option(1, "processes that rebuild the labeled records and run the detector for the features table "
                          "(one per core; the table is written every 8 x workers shards, so a stopped run keeps its work)")
    output_dir: str = option("runs/ranker/default", "summary.json of the run")
    export: str | None = option("restoreagent/assets/ranker", "folder to write the scorer to (null: none)")
