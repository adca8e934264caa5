#!/usr/bin/env bash
# The room for customisation for the networks trained elsewhere (shipped TASK-visible), measured as for the
# in-domain ones: (1) fixed per-task edits fitted on half B of MSRS train (which the networks never saw) and checked
# on val; (2) the labelled per-image oracle at 3 grey levels, scored with eval-task against the VFN.
#   bash research/oracles/room_trained_elsewhere.sh [OUT]      (default runs/room_visible)
set -euo pipefail
OUT=${1:-runs/room_visible}
D=../shared/data/msrs
HERE=$(dirname "$0")
mkdir -p "$OUT/eval"
if [[ ! -s $OUT/edits_score.txt ]]; then  # (rerun: only the oracle, e.g. ORACLE_FLAGS="--sign --steps 3")
  for split in docs/training/splits/msrs_train_b.txt val; do
    python "$HERE/edit_directions.py" collect --data $D --split $split --networks=-visible --out "$OUT/edits"
  done
  python "$HERE/edit_directions.py" score --out "$OUT/edits" --fit msrs_train_b --check val --levels 3 \
    | tee "$OUT/edits_score.txt"
fi
python "$HERE/oracle_customisation.py" --data $D --split val --networks=-visible --budgets 3 ${ORACLE_FLAGS:-} --out "$OUT/oracle${ORACLE_TAG:-}"
for t in detection segmentation saliency; do
  cldyn eval-task --task $t --weights $t-visible --data $D --source "$OUT/oracle${ORACLE_TAG:-}/b3/$t" --against vfn \
    --resamples 500 --json "$OUT/eval/${t}_oracle${ORACLE_TAG:-}_b3_vs_vfn.json" --threads 1 --quiet 2>&1 | tail -3
done
