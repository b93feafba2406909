"""Train one learned tool: the train-tool job (settings: restoreagent/jobs/train_tool.py; what the tool
learns: restoreagent/catalog/learned/NAME.yaml).

python train/train_tool.py tool=unet_denoise_mid      # rebuilds restoreagent/assets/tools/unet_denoise_mid.safetensors
python train/train_tool.py tool=unet_dehaze train.max_steps=200 export=null output_dir=runs/tools/try
python train/train_tool.py --config configs/smoke/train-tool.yaml   # small, on a CPU
scripts/train_tools.sh                                # every shipped tool
"""

from restoreagent.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("train-tool"))
