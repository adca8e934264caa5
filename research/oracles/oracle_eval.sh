#!/bin/bash
# research/oracles/oracle_eval.sh FOLDER NAME [THREADS]: each task network on each task's folder (own vs the other two, own vs VFN),
# paired bootstrap, and fusion quality against the VFN -> $OUT (default docs/training/eval/oracle/)
set -e
F=$1; N=$2; T=${3:-1}
D=../shared/data/msrs; O=${OUT:-docs/training/eval/oracle}; mkdir -p $O
for t in detection segmentation saliency; do
  cldyn eval-task --task $t --data $D --source $F/$t --against vfn --json $O/${t}_${N}_own_vs_vfn.json --threads $T --quiet 2>&1 | tail -3
  for o in detection segmentation saliency; do
    [ $o = $t ] && continue
    cldyn eval-task --task $t --data $D --source $F/$t --against $F/$o --resamples 500 --json $O/${t}_${N}_own_vs_${o}.json --threads $T --quiet 2>&1 | tail -3
  done
done
cldyn evaluate --data $D --split val --vfn --fused $F/detection $F/segmentation $F/saliency --names det seg sal \
  --metrics mi,vif,qabf,ssim,qcv,nabf --out runs/fq_$N --json $O/fusion_quality_val_${N}.json --quiet --overwrite 2>&1 | tail -3
