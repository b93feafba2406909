"""Train the plan scorer: the train-ranker job (settings: restoreagent/jobs/train_ranker.py).

python train/train_ranker.py                    # features of labels/restoreagent-labels-v1 into runs/ranker/,
                                                # then restoreagent/assets/ranker
python train/train_ranker.py --config configs/smoke/train-ranker.yaml   # small, on a CPU
"""

from restoreagent.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("train-ranker"))
