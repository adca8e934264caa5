#!/bin/bash
# Fusion quality of the shipped `visible` RSC customised for each visible-trained network at strength auto, beside
# strength 0.5 in the same run, on MSRS val and the 6 M3FD samples (cddfuse convention, against the VFN).
#   bash research/frozen_networks/fusion_quality_auto.sh [OUT]      (default runs/strength_auto)
set -euo pipefail
OUT=${1:-runs/strength_auto}
mkdir -p "$OUT/val/ir" "$OUT/val/vi"
while read -r name; do
  ln -sf "$(realpath ../shared/data/msrs/ir/$name.png)" "$OUT/val/ir/$name.png"
  ln -sf "$(realpath ../shared/data/msrs/vi/$name.png)" "$OUT/val/vi/$name.png"
done < ../shared/data/msrs/splits/val.txt
for set in val m3fd; do
  src=$OUT/val
  [ $set = m3fd ] && src=../shared/data/m3fd-samples
  fused=()
  for s in auto 0.5; do
    for t in detection segmentation saliency; do
      d=$OUT/${set}_${t}_s$s
      [ -d "$d" ] || cldyn fuse "$src" -o "$d" --task $t --task-weights $t-visible --rsc-weights visible \
          --strength $s --threads 1 --quiet
      fused+=("$d")
    done
  done
  if [ $set = val ]; then data=(--data ../shared/data/msrs --split val); else data=(--data "$src"); fi
  cldyn evaluate "${data[@]}" --vfn --fused "${fused[@]}" --metrics vif,qabf,ssim --convention cddfuse \
      --out "$OUT/eval_$set" --overwrite --quiet
done
