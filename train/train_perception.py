"""Train the degradation detector: the train-perception job (settings: restoreagent/perception/config.py).

python train/train_perception.py steps=40000 workers=16 export=restoreagent/assets/perception
python train/train_perception.py --config configs/smoke/train-perception.yaml   # small, on a CPU
"""

from restoreagent.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("train-perception"))
