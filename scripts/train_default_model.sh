#!/usr/bin/env bash
# Reproduces the bundled default liveness model: the recipe chosen on the
# cross-session protocol (benchmarks/README.md, "Recipe"), trained on BOTH NUAA
# training sessions from the ImageNet MobileNetV2 backbone, then converted to
# full-integer int8 with the parity check.
#
#   bash scripts/train_default_model.sh            # or: make default-model
#   OUT=build/default-model BUNDLE=1 bash scripts/train_default_model.sh --force
#
# Validation: subjects 0008 and 0009 of both sessions are held out. They choose
# the kept epoch (early stopping on the validation loss) and the threshold (the
# validation EER threshold, re-derived on the int8 scores by convert); the
# other seven subjects train the model. No figure of the test session is used.
#
# Environment: DATA (NUAA training sessions), WEIGHTS (folder of the ImageNet
# backbones, mobilenet_v2_<alpha>_no_top.weights.h5), CROPS, OUT, MEMBERS,
# RECIPE, PY. BUNDLE=1 copies the int8 model, its sidecar and the float weights
# into tla_edge/runtime/assets/. Extra arguments go to tla-edge train.
set -euo pipefail
# One block, parsed before it runs: editing this file during a run (it takes a
# while) cannot change what the running copy does.
{
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/nuaa-train}
export TLA_EDGE_WEIGHTS_DIR=${WEIGHTS:-../shared/weights/imagenet}
CROPS=${CROPS:-build/crops/nuaa}
OUT=${OUT:-build/default-model}
VAL_SUBJECTS=${VAL_SUBJECTS:-0008,0009}
# The chosen recipe (benchmarks/README.md, "Recipe"): MEMBERS lists alpha:scale of
# each model; two members are fused (mean score, one threshold derived on the
# fused validation scores by tla-edge evaluate --store-fusion). The first is the primary
# model (its float weights are what `tla-edge train --weights default` starts from).
MEMBERS=${MEMBERS:-0.35:2.7 1.0:2.7}
RECIPE=${RECIPE:---epochs 10 --fine-tune-epochs 3 --fine-tune-at 100 --fine-tune-lr 1e-5 --patience 3 --monitor val_loss}

scales=$(tr ' ' '\n' <<<"$MEMBERS" | cut -d: -f2 | paste -sd, -)
missing=$("$PY" - "$CROPS" "$scales" <<'EOF'
import sys
from pathlib import Path
from tla_edge.data import datasets
have = set()
if (Path(sys.argv[1]) / "manifest.csv").is_file():
    have = {float(r["scale"]) for r in datasets.read_manifest(sys.argv[1])}
print(",".join(s for s in sys.argv[2].split(",") if not any(abs(float(s) - h) < 1e-6 for h in have)))
EOF
)
if [ -n "$missing" ]; then
  echo "[default-model] preparing crops of $DATA at scales $missing into $CROPS" >&2
  "$PY" -m tla_edge.cli prepare "$DATA" --out "$CROPS" --scales "$missing"
fi

models=()
primary=""
for member in $MEMBERS; do
  alpha=${member%%:*}; scale=${member##*:}
  name="a${alpha}_s${scale}"
  echo "[default-model] training mobilenetv2 alpha $alpha at scale $scale from ImageNet -> $OUT/$name" >&2
  # shellcheck disable=SC2086
  "$PY" -m tla_edge.cli train "$CROPS" --out "$OUT/$name" --arch mobilenetv2 --alpha "$alpha" \
    --input-size 160 --weights imagenet --scale "$scale" --val-subjects "$VAL_SUBJECTS" --seed 0 $RECIPE "$@"
  if [ -z "$primary" ]; then primary=$name; tflite="$OUT/liveness_mnv2_int8.tflite"
  else tflite="$OUT/liveness_mnv2_a${alpha}_s${scale}_int8.tflite"; fi
  echo "[default-model] int8 conversion (calibration: training subjects; parity: held-out subjects) -> $tflite" >&2
  "$PY" -m tla_edge.cli convert "$OUT/$name" --int8 --calib "$CROPS" --val-subjects "$VAL_SUBJECTS" \
    --out "$tflite" --report "$OUT/convert_$name.json" --force
  models+=("$tflite")
done

if [ "${#models[@]}" -gt 1 ]; then
  echo "[default-model] fused threshold: EER of the mean int8 score on the held-out subjects" >&2
  model_args=(); for m in "${models[@]}"; do model_args+=(--model "$m"); done
  "$PY" -m tla_edge.cli evaluate "$CROPS" "${model_args[@]}" --subjects "$VAL_SUBJECTS" \
    --store-fusion "$OUT/fused" --out "$OUT/fusion_validation" --force
  fused=(); for m in "${models[@]}"; do fused+=("$OUT/fused/${m##*/}"); done
  models=("${fused[@]}")  # the copies carrying the fused threshold are the ones bundled
fi

"$PY" - "$OUT/$primary/model.keras" "$OUT/liveness_default.weights.h5" <<'EOF'
import sys
import keras
keras.models.load_model(sys.argv[1], compile=False).save_weights(sys.argv[2])
EOF

if [ "${BUNDLE:-0}" = 1 ]; then
  for m in "${models[@]}"; do cp "$m" "$m.json" tla_edge/runtime/assets/; done
  cp "$OUT/liveness_default.weights.h5" tla_edge/runtime/assets/
  echo "[default-model] bundled into tla_edge/runtime/assets/: ${models[*]##*/} liveness_default.weights.h5" >&2
fi
exit 0
}
