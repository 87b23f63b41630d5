#!/usr/bin/env bash
# Set up the project, then run the main job on the embedded MiniCanvas model:
# generate a grid for a few prompts, grade every image, and check the quality gates.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export HF_HUB_OFFLINE=1
out="${MIMMU_HOME:-.mimmu}/main"
.venv/bin/mimmu generate --model minicanvas --num-images 8 --seed 0 --overwrite --out "$out/generate" \
  --prompt "a red star" --prompt "a striped blue hexagon" \
  --prompt "a heart with a dotted texture, in yellow" --prompt "a green lightning bolt"
.venv/bin/mimmu minicanvas grade "$out/generate" --json "$out/grades.json"
.venv/bin/mimmu minicanvas check --json "$out/check.json"
echo "grid: $out/generate/grid.png  grades: $out/grades.json  gates: $out/check.json"
