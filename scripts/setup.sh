#!/usr/bin/env bash
# Create .venv in the repository and install mimmu with its pipeline and test extras.
# On a machine without an NVIDIA GPU, torch 2.13.0 (a CPU build) is installed first so
# that the project's torch range does not pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if ! command -v nvidia-smi >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[pipeline,dev]"
echo "set up .venv; activate it with: source .venv/bin/activate"
