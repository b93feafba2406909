"""Train the fusion network: the train-fusion job (settings: restoreagent/jobs/train_fusion.py).

python train/train_fusion.py                    # candidate sets into data/fusion_candidates (once), then
                                                # restoreagent/assets/fusion/fusion.safetensors
python train/train_fusion.py --config configs/smoke/train-fusion.yaml   # small, on a CPU
"""

from restoreagent.jobs import main

if __name__ == "__main__":
    raise SystemExit(main("train-fusion"))
