#!/usr/bin/env bash
# Round 16, rule R16 (benchmarks/README.md, committed before this ran): two candidates,
# each both members (2.7x, 1.4x) x nuaa-msu, msu-nuaa x seeds 0, 1, then fused by the mean.
# Needs the 96 px shift crops of both datasets and their teacher targets (benchmarks/README.md):
#   CROPS=runs/crops_96 WORK=runs/lodo bash scripts/round16.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TLA_EDGE_WEIGHTS_DIR:?set it to the folder of the ImageNet backbones (../shared/weights/imagenet)}"
C=${CROPS:-runs/crops_96}
WORK=${WORK:-runs/lodo}
BASE=(--alpha 0.35 --input-size 96 --crop-rule shift --weights imagenet --epochs 10 --fine-tune-epochs 3
      --teacher-targets "$C/nuaa.teacher.csv" --teacher-targets "$C/msu.teacher.csv" --distill 0.3 --colour greynorm)
COMMON=(--nuaa-crops "$C/nuaa" --msu-crops "$C/msu" --work "$WORK" --directions nuaa-msu,msu-nuaa --seeds 0,1)
run() {  # tag, note, extra train options...
    local tag=$1 note=$2; shift 2
    for s in 2.7 1.4; do
        python scripts/lodo.py --name "a0.35_s${s}_shift_kd0.3_px96_r16_${tag}" "${COMMON[@]}" \
            --note "R16 candidate ${tag}, ${s}x member: ${note}" -- "${BASE[@]}" --scale "$s" "$@"
    done
    python scripts/lodo.py --name "a0.35_s2.7+1.4_shift_kd0.3_px96_r16_${tag}" "${COMMON[@]}" \
        --fuse "a0.35_s2.7_shift_kd0.3_px96_r16_${tag},a0.35_s1.4_shift_kd0.3_px96_r16_${tag}" \
        --note "R16 candidate ${tag}: both members fused by the mean" --
}
run simcam "simulated attacks 0.5 and camera augmentation" --simulated-attacks 0.5 --camera-augment
# --fine-tune-epochs given last wins over BASE's 3 (argparse keeps the last)
run ft0 "no phase 2: the ImageNet backbone frozen" --fine-tune-epochs 0
echo R16 DONE
