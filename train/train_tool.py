"""Train one of the project's learned tools (hydra app; the logic is restoreagent.tools.learned.training).

python train/train_tool.py tool=unet_denoise_mid          # rebuilds restoreagent/assets/tools/unet_denoise_mid.safetensors
python train/train_tool.py tool=unet_dehaze train.steps=200 export=null output_dir=runs/tools/try
scripts/train_tools.sh                                     # every shipped tool
"""

import json
import logging
import os

import hydra
from omegaconf import DictConfig

os.environ.setdefault("WANDB_MODE", "offline")


@hydra.main(version_base=None, config_path="../configs", config_name="train/tool_default")
def main(cfg: DictConfig) -> None:
    from restoreagent.errors import RestoreAgentError
    from restoreagent.tools.learned.training import train_tool

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = train_tool(cfg)
    except RestoreAgentError as e:
        raise SystemExit(f"error: {e}") from None
    summary.pop("history")
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
