#!/usr/bin/env bash
# Task networks trained elsewhere: each sees one camera only (never a fused image), on half A of the MSRS train
# split, so that an RSC can be trained on half B with networks that never saw those pairs.
#   bash research/frozen_networks/train_networks.sh QUEUE [DATA] [OUT]
# QUEUE: a = detectors, b = segmentation and saliency networks. Rerunning resumes every unfinished network;
# networks already shipped in src/cldyn/weights are skipped (RETRAIN=1 trains them again).
set -euo pipefail
QUEUE=$1
DATA=${2:-../shared/data/msrs}
OUT=${3:-runs/frozen}
PRE=${PRETRAINED:-runs/pretrained}
SPLIT=docs/training/splits/msrs_train_a.txt
mkdir -p "$OUT"

train() {  # NAME INPUT then train-task options
    local name=$1 input=$2
    shift 2
    if [[ -f "$OUT/$name/done" ]]; then return; fi
    # Already shipped inside the package (a fresh clone has no runs/): nothing to train.
    if [[ -f "src/cldyn/weights/task_$name.safetensors" && -z ${RETRAIN:-} ]]; then return; fi
    local resume=()
    [[ -f "$OUT/$name/last.safetensors" ]] && resume=(--resume)
    echo "$(date -u +%FT%TZ) start $name" >> "$OUT/log.txt"
    cldyn train-task --data "$DATA" --split "$SPLIT" --input "$input" --crop 320 --batch-size 8 --threads 1 --quiet \
        --out "$OUT/$name" "${resume[@]}" "$@"
    touch "$OUT/$name/done"
    echo "$(date -u +%FT%TZ) done $name" >> "$OUT/log.txt"
}

DET=(--task detection --pretrained "$PRE/efficientnet_lite0.safetensors" --epochs 60 --lr 1e-3 --val-every 5)
SEG=(--task segmentation --set 'arch="lite0-fpn"' 'class_weights="enet"' --epochs 30 --lr 1e-3 --val-every 3
     --pretrained "$PRE/efficientnet_lite0.safetensors")
SAL=(--task saliency --set 'arch="lite0-fpn"' --epochs 30 --lr 1e-3 --val-every 3
     --pretrained "$PRE/efficientnet_lite0.safetensors")

case $QUEUE in
a)
    train detection-visible visible "${DET[@]}" --labels visible
    train detection-visible-2 visible --task cldyn.tasks.detection_fcos:FCOSDetectionAdapter \
        --pretrained "$PRE/efficientnet_lite0.safetensors" --epochs 60 --lr 1e-3 --val-every 5 --labels visible
    train detection-infrared infrared "${DET[@]}" --labels infrared
    ;;
b)
    train segmentation-visible visible "${SEG[@]}"
    train saliency-visible visible "${SAL[@]}"
    train segmentation-visible-2 visible --task segmentation --set 'arch="lite1-fpn"' 'class_weights="enet"' \
        --epochs 30 --lr 1e-3 --val-every 3 --pretrained "$PRE/efficientnet_lite1.safetensors"
    train saliency-visible-2 visible --task saliency --set 'arch="u2netp"' --epochs 12 --lr 5e-4 --val-every 3 \
        --pretrained "$PRE/u2netp.safetensors"
    train segmentation-infrared infrared "${SEG[@]}"
    ;;
*) echo "usage: $0 a|b [DATA] [OUT]" >&2; exit 2 ;;
esac
