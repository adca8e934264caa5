#!/usr/bin/env bash
# The RSC customised in the closed loop for task networks trained elsewhere (visible images only): trained on half B
# of the MSRS train split, which those networks (half A) never saw.
#   bash research/frozen_networks/train_rsc.sh NAME [extra train-rsc flags]    (rerun: resumes)
# e.g. NAME=vis_s0 --seed 0; vis_nocl_s0 --seed 0 --no-closed-loop
# Other networks: TASKS=detection,segmentation TASK_WEIGHTS="detection=FILE segmentation=FILE", e.g. the networks
# trained on infrared images (ir_s0 --seed 0 --init visible).
set -euo pipefail
NAME=$1
shift
NETS=${NETS:-runs/frozen}
OUT=${RSC_OUT:-runs/frozen_rsc}
# The fp32 network from train_networks.sh when present, else the shipped (fp16) network of that name.
net() { if [[ -f $NETS/$1/best.safetensors ]]; then echo "$NETS/$1/best.safetensors"; else echo "$1"; fi; }
STEPS=${STEPS:-120}
dir=$OUT/$NAME
[[ -e $dir/done ]] && exit 0
resume=()
[[ -e $dir/last.safetensors ]] && resume=(--resume)
mkdir -p "$dir"
echo "$(date -u +%FT%TZ) start $NAME $*" >> "$OUT/log.txt"
if [[ -n ${TASK_WEIGHTS:-} ]]; then
    read -ra weights <<< "$TASK_WEIGHTS"
else
    weights=(detection="$(net detection-visible)" segmentation="$(net segmentation-visible)"
             saliency="$(net saliency-visible)")
fi
cldyn train-rsc --data ../shared/data/msrs --split docs/training/splits/msrs_train_b.txt \
    --tasks "${TASKS:-detection,segmentation,saliency}" --task-weights "${weights[@]}" \
    --steps "$STEPS" --lr 5e-3 --batch-size 4 --crop 256 --fusion-weight 0.5 --change-weight 0 \
    --cache-batches 30 --val-every "$STEPS" --val-limit 20 --checkpoint-every 10 --threads 1 --quiet \
    --out "$dir" "${resume[@]}" "$@"
date -u +%FT%TZ > "$dir/done"
echo "$(date -u +%FT%TZ) done $NAME" >> "$OUT/log.txt"
