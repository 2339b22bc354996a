#!/usr/bin/env bash
# The recipe comparison of the default model, every candidate through the same
# cross-session protocol (scripts/protocol.py: train on one session, validation
# on held-out subjects of it, test on the other session; both directions, two
# seeds). Results: benchmarks/results/protocol/<name>.json; the table in
# benchmarks/README.md is made from them by scripts/protocol_table.py.
#
#   CROPS=crops/nuaa WORK=runs/protocol bash scripts/recipe_sweep.sh [NAME ...]
#
# CROPS must hold scales 2.0, 2.7, 3.5 and 4.0 (tla-edge prepare --scales
# 2.0,2.7,3.5,4.0). ImageNet backbones are found offline through
# $TLA_EDGE_WEIGHTS_DIR (default ../shared/weights/imagenet). With names, only
# those candidates run. SEEDS (default 0,1) picks the seeds. Finished runs are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CROPS=${CROPS:?set CROPS to a folder written by tla-edge prepare}
WORK=${WORK:?set WORK to a folder for the runs}
export TLA_EDGE_WEIGHTS_DIR=${TLA_EDGE_WEIGHTS_DIR:-../shared/weights/imagenet}

# name | tla-edge train arguments (base: alpha 0.35, 160 px, scale 2.7, 10 head
# epochs, 3 fine-tune epochs from layer 100 at 1e-5, default augmentation)
BASE="--arch mobilenetv2 --input-size 160 --weights imagenet --epochs 10 --patience 3 --monitor val_loss"
declare -A RECIPES=(
  [a0.35_s2.7]="$BASE --alpha 0.35 --scale 2.7 --fine-tune-epochs 3"
  [a0.35_s2.0]="$BASE --alpha 0.35 --scale 2.0 --fine-tune-epochs 3"
  [a0.35_s3.5]="$BASE --alpha 0.35 --scale 3.5 --fine-tune-epochs 3"
  [a0.35_s4.0]="$BASE --alpha 0.35 --scale 4.0 --fine-tune-epochs 3"
  [a1.0_s2.7]="$BASE --alpha 1.0 --scale 2.7 --fine-tune-epochs 3"
  [a0.35_s2.7_head]="$BASE --alpha 0.35 --scale 2.7 --fine-tune-epochs 0"
  [a0.35_s2.7_ft8]="$BASE --alpha 0.35 --scale 2.7 --fine-tune-epochs 8"
  [a0.35_s2.7_ftall]="$BASE --alpha 0.35 --scale 2.7 --fine-tune-epochs 3 --fine-tune-at 0"
  [a0.35_s2.7_ftlr1e-4]="$BASE --alpha 0.35 --scale 2.7 --fine-tune-epochs 3 --fine-tune-lr 1e-4"
  [a0.35_s2.7_noaug]="$BASE --alpha 0.35 --scale 2.7 --fine-tune-epochs 3 --no-augment"
  [a0.35_s2.7_ls0.2]="$BASE --alpha 0.35 --scale 2.7 --fine-tune-epochs 3 --label-smoothing 0.2"
  [a1.0_s2.7_ls0.2]="$BASE --alpha 1.0 --scale 2.7 --fine-tune-epochs 3 --label-smoothing 0.2"
  [resnet34_scratch_s2.7]="--arch resnet34 --input-size 160 --weights none --scale 2.7 --epochs 6 --patience 3 --monitor val_loss"
)
ORDER=(a0.35_s2.7 a0.35_s4.0 a0.35_s2.0 a0.35_s3.5 a1.0_s2.7 a0.35_s2.7_head a0.35_s2.7_ft8
       a0.35_s2.7_ftall a0.35_s2.7_ftlr1e-4 a0.35_s2.7_noaug a0.35_s2.7_ls0.2 a1.0_s2.7_ls0.2
       resnet34_scratch_s2.7)
[ $# -gt 0 ] && ORDER=("$@")
for name in "${ORDER[@]}"; do
  [ -n "${RECIPES[$name]:-}" ] || { echo "recipe_sweep: unknown candidate '$name'; expected one of ${!RECIPES[*]}" >&2; exit 2; }
  # shellcheck disable=SC2086
  "$PY" scripts/protocol.py --name "$name" --crops "$CROPS" --work "$WORK" --seeds "${SEEDS:-0,1}" --force -- ${RECIPES[$name]}
done
