#!/usr/bin/env bash
# Rebuild every shipped learned tool (restoreagent/assets/tools/*.safetensors) from the data folders.
#   scripts/train_tools.sh                         # all tools declared in restoreagent/catalog/learned/, 2 at a time, 1 CPU thread each
#   JOBS=1 THREADS=2 scripts/train_tools.sh unet_dehaze unet_sr   # some tools; extra key=value overrides via ARGS
# Each run resumes from runs/tools/NAME/checkpoint.pt, so the script can be interrupted and re-run.
# Logs: runs/tools/NAME.log
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
ARGS=${ARGS:-}
if [ $# -gt 0 ]; then tools=("$@"); else tools=($(ls restoreagent/catalog/learned | sed "s/\.yaml$//")); fi
mkdir -p runs/tools
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
printf '%s\n' "${tools[@]}" | xargs -P "$JOBS" -I{} sh -c \
  "$PY train/train_tool.py tool={} threads=$THREADS $ARGS > runs/tools/{}.log 2>&1 && echo 'done {}' || { echo 'FAILED {} (see runs/tools/{}.log)'; exit 1; }"
