"""Hydra entry point for the planner's training data; the logic lives in restoreagent.labeling.

Builds the default dataset (labeled pipelines, then SFT pairs) from the train folders in ONE
command, resumable after an interruption (run it again):

    python data_gen/label.py                                   # configs/data/default.yaml
    python data_gen/label.py images=../shared/data/images/urban100_crops samples=200 out=data/try
    python data_gen/label.py workers=8                          # or backend=ray ray_address=HOST:6379

Equivalent to `restoreagent label --images ... --out OUT/labeled ...` followed by
`restoreagent dataset build-sft OUT/labeled --out OUT/sft`. Paths are relative to where you launch it.
"""

import json

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from restoreagent.labeling.recipe import run_recipe


def _abs(cfg: dict) -> dict:
    images = cfg["images"]
    images = [images] if isinstance(images, str) else list(images)
    cfg["images"] = [to_absolute_path(p) for p in images]
    cfg["out"] = to_absolute_path(cfg["out"])
    for key in ("combos_file", "toolset"):
        if isinstance(cfg.get(key), str):
            cfg[key] = to_absolute_path(cfg[key])
    return cfg


@hydra.main(version_base=None, config_path="../configs/data", config_name="default")
def main(cfg: DictConfig) -> None:
    result = run_recipe(_abs(OmegaConf.to_container(cfg, resolve=True)))
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
