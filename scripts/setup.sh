#!/usr/bin/env bash
# One command from a fresh clone to a working install: a virtual environment in .venv with the
# locked dependencies (requirements.lock), pyiqa (without its heavy optional deps) and restoreagent
# itself (editable). Idempotent: re-running it only installs what is missing.
# The lock is made from pyproject.toml by pip-tools (its header has the command); regenerate it after
# changing the dependencies there. Optional extras: pip install -e '.[ray]' / '.[zoo-extra]' / '.[tracking]' / '.[web]'.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml (pip finds them on this kind of machine's disk).
.venv/bin/python -m pip install -q -r requirements.lock
# pyiqa's metadata pulls opencv-python (via facexlib) and bitsandbytes: installing it --no-deps keeps
# exactly one OpenCV wheel (opencv-python-headless). What it imports is declared in pyproject.toml.
.venv/bin/python -m pip install -q --no-deps pyiqa==0.1.16 openai-clip==1.0.1
.venv/bin/python -m pip install -q --no-deps -e .
.venv/bin/restoreagent --version
