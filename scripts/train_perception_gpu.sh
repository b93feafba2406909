#!/usr/bin/env bash
# The shipped detector's training run, sized for a GPU machine with 16 cores: 15 loader workers
# make fresh samples, the GPU trains on them for BUDGET seconds (the schedule anneals to that time).
#   PHOTOS='[a,b,c]' BUDGET=420 scripts/train_perception_gpu.sh [key=value ...]
# Extra key=value settings override the defaults in restoreagent/perception/config.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
PHOTOS=${PHOTOS:-"[../shared/data/images/urban100_crops,../shared/data/images/sun_hays80,../shared/data/images/set14]"}
exec "$PY" train/train_perception.py photos="$PHOTOS" out=${RUN:-runs/perception/gpu} \
  workers=${WORKERS:-15} batch_size=512 lr=3e-3 warmup=300 steps=1000000 time_budget_s=${BUDGET:-420} \
  checkpoint_every=1000 log_every=100 val_samples=6000 "$@"
