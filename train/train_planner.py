"""Train the VLM planner: the train-planner job (settings: restoreagent/jobs/train_planner.py).

python train/train_planner.py                                   # stage 1: the default tiny planner
python train/train_planner.py planner=smolvlm_256m data.source=disk data.path=data/sft
python train/train_planner.py output_dir=runs/planner/X resume=true
python train/train_planner.py --config configs/smoke/train-planner.yaml   # small, on a CPU
accelerate launch train/train_planner.py planner=qwen2_vl_2b ...   # several GPUs
"""

from restoreagent.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("train-planner"))
