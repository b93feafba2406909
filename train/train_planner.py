"""Train the VLM planner (hydra app; the logic is restoreagent.planners.vlm.training).

python train/train_planner.py                                  # stage 1: default tiny planner
python train/train_planner.py planner=smolvlm_256m data.source=disk data.path=data/sft
python train/train_planner.py output_dir=runs/planner/X resume=true
accelerate launch train/train_planner.py planner=qwen2_vl_2b ...   # several GPUs
"""

import json
import logging
import os

import hydra
from omegaconf import DictConfig

os.environ.setdefault("WANDB_MODE", "offline")


@hydra.main(version_base=None, config_path="../configs", config_name="train/planner_default")
def main(cfg: DictConfig) -> None:
    from restoreagent.errors import RestoreAgentError
    from restoreagent.planners.vlm.training import train

    logging.getLogger("restoreagent").setLevel(logging.INFO)
    try:
        summary = train(cfg)
    except RestoreAgentError as e:
        raise SystemExit(f"error: {e}") from None
    last = [h for h in summary["history"] if "val_loss" in h]
    print(
        json.dumps(
            {"final": summary["final"], "steps": summary["steps"], "last_eval": last[-1] if last else None},
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
