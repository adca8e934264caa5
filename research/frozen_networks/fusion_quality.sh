#!/bin/bash
# fusion quality of CLDyN (vis_s0) customised for each visible network, at strengths 1 and 0.5, on MSRS val
cd /work/main
OUT=runs/strength
mkdir -p $OUT/val/ir $OUT/val/vi
while read -r name; do
  ln -sf "$(realpath ../shared/data/msrs/ir/$name.png)" "$OUT/val/ir/$name.png"
  ln -sf "$(realpath ../shared/data/msrs/vi/$name.png)" "$OUT/val/vi/$name.png"
done < ../shared/data/msrs/splits/val.txt
R=runs/frozen_rsc/vis_s0/best.safetensors
fused=()
for s in 1 0.5; do
  for t in detection segmentation saliency; do
    d=$OUT/${t}_s$s
    [ -d $d ] || cldyn fuse $OUT/val -o $d --task $t --task-weights $t-visible --rsc-weights $R --strength $s --threads 1 --quiet
    fused+=($d)
  done
done
cldyn evaluate --data ../shared/data/msrs --split val --vfn --fused "${fused[@]}" --baselines max,average --metrics vif,qabf,ssim,mi --convention cddfuse --out $OUT/eval --overwrite --quiet
