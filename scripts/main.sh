#!/usr/bin/env bash
# Set up the project, then run the main job on the embedded MiniCanvas model: the
# erase-concept flow erases one concept, gates the result and promotes it if it passes.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export HF_HUB_OFFLINE=1 DO_NOT_TRACK=1 GX_ANALYTICS_ENABLED=false MLFLOW_ENABLE_TELEMETRY=false
export PREFECT_SERVER_ANALYTICS_ENABLED=false
concept="${1:-star}"
status=0
.venv/bin/python -m flows.erase_concept --concept "$concept" || status=$?
.venv/bin/mimmu --quiet registry status
exit "$status"
