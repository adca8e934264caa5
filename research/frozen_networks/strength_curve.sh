#!/usr/bin/env bash
# Task score and fusion quality against the customisation's strength, for the networks trained elsewhere.
#   bash research/frozen_networks/strength_curve.sh RSC_WEIGHTS [OUT] [STRENGTHS...]
# Writes OUT/table_s{S}.json and .md (cldyn frozen-table at each strength; plain sources are predicted once and
# cached) and OUT/eval (VIF, Qabf, SSIM of the val pairs fused for detection-visible at each strength, and VFN).
set -euo pipefail
RSC=$1
OUT=${2:-runs/strength}
shift 2 || shift $#
STRENGTHS=("${@:-0.25 0.5 0.75 1}")
read -r -a STRENGTHS <<< "${STRENGTHS[*]}"
DATA=../shared/data/msrs
mkdir -p "$OUT/val/ir" "$OUT/val/vi"
while read -r name; do  # the val pairs as a folder of their own
    ln -sf "$(realpath $DATA/ir/$name.png)" "$OUT/val/ir/$name.png"
    ln -sf "$(realpath $DATA/vi/$name.png)" "$OUT/val/vi/$name.png"
done < $DATA/splits/val.txt
fused=()
for s in "${STRENGTHS[@]}"; do
    cldyn frozen-table --data $DATA --networks detection-visible segmentation-visible saliency-visible \
        --rsc-weights "$RSC" --strength "$s" --peer seafusion=../shared/data/peers/seafusion/msrs-val \
        --resamples 500 --out "$OUT/table" --threads 1 --quiet > /dev/null
    cp "$OUT/table/table.json" "$OUT/table_s$s.json"
    cp "$OUT/table/table.md" "$OUT/table_s$s.md"
    [[ -d $OUT/fused_s$s ]] || cldyn fuse "$OUT/val" -o "$OUT/fused_s$s" --task detection \
        --task-weights detection-visible --rsc-weights "$RSC" --strength "$s" --threads 1 --quiet
    fused+=("$OUT/fused_s$s")
done
cldyn evaluate --data $DATA --split val --vfn --fused "${fused[@]}" --metrics vif,qabf,ssim,mi \
    --out "$OUT/eval" --overwrite --quiet
