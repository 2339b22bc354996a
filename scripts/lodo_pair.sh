#!/usr/bin/env bash
# One candidate recipe for the bundled pair on the leave-one-dataset-out protocol (rules R16 on,
# benchmarks/README.md): both members (2.7x, 1.4x) x nuaa-msu, msu-nuaa x seeds 0, 1, trained with
# the shipped recipe plus the candidate's options, then fused by the mean. Trains 8 models.
#
#   TLA_EDGE_WEIGHTS_DIR=../shared/weights/imagenet CROPS=runs/crops_96 WORK=runs/lodo \
#       bash scripts/lodo_pair.sh TAG "what the candidate changes" [tla-edge train options...]
#
# CROPS holds the 96 px shift crops of both datasets (nuaa/, msu/) and their teacher targets
# (nuaa.teacher.csv, msu.teacher.csv): benchmarks/README.md, leave-one-dataset-out protocol.
# Options given here come after the shipped ones, so they win (argparse keeps the last).
# Round 16: TAG r16_simcam (--simulated-attacks 0.5 --camera-augment), TAG r16_ft0 (--fine-tune-epochs 0).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TLA_EDGE_WEIGHTS_DIR:?set it to the folder of the ImageNet backbones (../shared/weights/imagenet)}"
if [ $# -lt 2 ]; then
    echo "usage: bash scripts/lodo_pair.sh TAG NOTE [tla-edge train options...]; got $# arguments" >&2
    exit 2
fi
tag=$1 note=$2
shift 2
C=${CROPS:-runs/crops_96}
WORK=${WORK:-runs/lodo}
BASE=(--alpha 0.35 --input-size 96 --crop-rule shift --weights imagenet --epochs 10 --fine-tune-epochs 3
      --teacher-targets "$C/nuaa.teacher.csv" --teacher-targets "$C/msu.teacher.csv" --distill 0.3 --colour greynorm)
COMMON=(--nuaa-crops "$C/nuaa" --msu-crops "$C/msu" --work "$WORK" --directions nuaa-msu,msu-nuaa --seeds 0,1)
for s in 2.7 1.4; do
    python scripts/lodo.py --name "a0.35_s${s}_shift_kd0.3_px96_${tag}" "${COMMON[@]}" \
        --note "candidate ${tag}, ${s}x member: ${note}" -- "${BASE[@]}" --scale "$s" "$@"
done
python scripts/lodo.py --name "a0.35_s2.7+1.4_shift_kd0.3_px96_${tag}" "${COMMON[@]}" \
    --fuse "a0.35_s2.7_shift_kd0.3_px96_${tag},a0.35_s1.4_shift_kd0.3_px96_${tag}" \
    --note "candidate ${tag}: both members fused by the mean" --
