#!/bin/bash
# Issue 13 point 5 on the 2-core CPU: the RSC runs behind `cldyn experiment` (seeds of the full method and of the
# no-closed-loop ablation, one seed of every other ablation), trained with the half-B protocol: task networks trained
# on half A of the MSRS train split (runs/p5/task_*_half_a), the RSC on half B, which those networks never saw.
#
#   bash research/rsc_runs/rsc_seeds.sh list            # the runs and whether each is done
#   bash research/rsc_runs/rsc_seeds.sh worker 0 2      # worker 0 of 2: every second run, one thread; resumable
#   bash research/rsc_runs/rsc_seeds.sh experiment      # cldyn experiment on MSRS val over the finished runs
#
# Each run writes runs/p5/NAME/ (log.csv, last.safetensors, best.safetensors); a finished run leaves
# runs/p5/NAME/done, and a stopped one goes on from last.safetensors when the worker is started again.
set -euo pipefail
OUT=${P5_OUT:-runs/p5}
STEPS=${P5_STEPS:-150}
COMMON=(--data ../shared/data/msrs --split docs/training/splits/msrs_train_b.txt
        --task-weights detection=$OUT/task_detection_half_a/best.safetensors
                       segmentation=$OUT/task_segmentation_half_a/best.safetensors
                       saliency=$OUT/task_saliency_half_a/best.safetensors
        --vfn-weights ${P5_VFN:-runs/vfn_p5.safetensors}
        --steps "$STEPS" --lr 1e-3 --batch-size 4 --crop 256 --change-weight 5
        --val-every "$STEPS" --val-limit 20 --checkpoint-every 10 --threads 1 --quiet)

# name | extra flags; the order interleaves full and no-closed-loop seeds so that two workers finish them first.
RUNS=(
  "full_s0|--seed 0"
  "no_closed_loop_s0|--seed 0 --no-closed-loop"
  "full_s1|--seed 1"
  "no_closed_loop_s1|--seed 1 --no-closed-loop"
  "full_s2|--seed 2"
  "no_closed_loop_s2|--seed 2 --no-closed-loop"
  "upstream_encoder_s0|--seed 0 --task-encoder upstream"
  "no_penalty_s0|--seed 0 --no-penalty"
  "mean_s0|--seed 0 --aggregate mean"
  "upstream_selection_s0|--seed 0 --selection upstream"
  "no_fusion_loss_s0|--seed 0 --fusion-weight 0"
  "no_change_penalty_s0|--seed 0 --change-weight 0"
)

run_one() {
  local name=$1 extra=$2 dir=$OUT/$1
  [ -e "$dir/done" ] && return 0
  local resume=()
  [ -e "$dir/last.safetensors" ] && resume=(--resume)
  mkdir -p "$dir"
  echo "$(date -u +%FT%TZ) cldyn train-rsc ${COMMON[*]} $extra --out $dir ${resume[*]}" >> "$OUT/commands.txt"
  # shellcheck disable=SC2086  # extra holds several flags
  cldyn train-rsc "${COMMON[@]}" $extra --out "$dir" "${resume[@]}"
  date -u +%FT%TZ > "$dir/done"
}

case ${1:-list} in
  list)
    for r in "${RUNS[@]}"; do
      n=${r%%|*}
      if [ -e "$OUT/$n/done" ]; then s=done; elif [ -e "$OUT/$n/last.safetensors" ]; then s=started; else s=-; fi
      printf '%-24s %-8s %s\n' "$n" "$s" "${r#*|}"
    done ;;
  worker)
    w=$2 n=$3
    for i in "${!RUNS[@]}"; do
      [ $((i % n)) -eq "$w" ] || continue
      r=${RUNS[$i]}
      run_one "${r%%|*}" "${r#*|}"
    done ;;
  experiment)
    # Seeds of the full method are the main rows; every other name (seed suffix dropped) is an ablation row.
    full=()
    declare -A abl=()
    for r in "${RUNS[@]}"; do
      n=${r%%|*} f=$OUT/${r%%|*}/best.safetensors
      [ -e "$OUT/$n/done" ] || continue
      if [[ $n == full_s* ]]; then full+=("$f"); else k=${n%_s*}; abl[$k]=${abl[$k]:+${abl[$k]},}$f; fi
    done
    # The second detector: the YOLO11n shipped until 2026-12-02 (needs cldyn[yolo]); neither RSC protocol saw it.
    yolo=$OUT/det_yolo11n_2026-11.safetensors
    [ -e "$yolo" ] || git show 51f0144^:src/cldyn/weights/task_detection.safetensors > "$yolo"
    # The RSC shipped on 2026-12-03 (change5 step 300, before full_s0 replaced it) as a row of its own.
    old=$OUT/rsc_shipped_2026-12-03.safetensors
    [ -e "$old" ] || git show 1756400:src/cldyn/weights/rsc.safetensors > "$old"
    args=()
    for k in "${!abl[@]}"; do args+=("$k=${abl[$k]}"); done
    [ ${#args[@]} -eq 0 ] || args=(--ablation "${args[@]}")
    set -x
    cldyn experiment --data ../shared/data/msrs --split val --out "${P5_EXPERIMENT:-runs/p5_experiment}" \
      --rsc-weights "${full[@]}" "${args[@]}" \
      --other-rsc shipped_2026_12_03="$old" \
      --second-detector "$yolo" --unseen ../shared/data/m3fd-samples --workers 2 --threads 2 --quiet ;;
  *) echo "usage: $0 list | worker W N | experiment" >&2; exit 2 ;;
esac
