"""One line per finished `cldyn train-rsc` run below a folder (issue 13, point 5): wall time, validation at the kept
checkpoint, the training-stream task loss against the base fusion's, and the mean |change| of the image
(8-bit grey levels, training crops).

    python research/rsc_runs/rsc_runs_summary.py runs/p5 [--last 50] [--copy-logs docs/training/p5]

Reads each run's `best.json` and `log.csv` only (no model is loaded). With --copy-logs, each run's log.csv is copied
to DIR/rsc_<run>_log.csv (the record kept in git; runs/ is not).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from cldyn.evaluation.claims import JUDGED_ON

TASKS = tuple(JUDGED_ON)


def summarise(run: Path, last: int) -> dict:
    rows = list(csv.DictReader((run / "log.csv").open()))
    tail = rows[-last:]
    best = json.loads((run / "best.json").read_text())
    out = {"run": run.name, "steps": int(rows[-1]["step"]), "val_score": best.get("val_score"),
           # seconds restart at 0 on --resume: the wall time is the sum of each segment's last value
           "seconds": sum(float(a["seconds"]) for a, b in zip(rows, [*rows[1:], None], strict=True)
                          if b is None or float(b["seconds"]) < float(a["seconds"]))}
    for t in (t for t in TASKS if f"{t}_loss" in rows[0]):  # a run may train for some of the tasks only
        loss = sum(float(r[f"{t}_loss"]) for r in tail)
        base = sum(float(r[f"{t}_base_loss"]) for r in tail)
        out[f"{t}_loss_vs_base_pct"] = 100 * (loss - base) / base
        out[f"{t}_change"] = 255 * sum(float(r[f"{t}_change"]) for r in tail) / len(tail)  # 8-bit grey levels
        out[f"{t}_val"] = best["val"][t][JUDGED_ON[t]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--last", type=int, default=50, help="training steps averaged at the end of each run")
    ap.add_argument("--copy-logs", metavar="DIR")
    args = ap.parse_args()
    runs = sorted(p.parent for p in Path(args.root).glob("*/done"))
    print(f"{'run':<24} {'s':>6} {'det':>7} {'seg':>7} {'maxF':>7} {'score':>8}  loss vs base, last {args.last} "
          f"steps (det/seg/sal %)  |change| in grey levels (det/seg/sal)")
    for run in runs:
        s = summarise(run, args.last)
        pct = " / ".join(f"{s[f'{t}_loss_vs_base_pct']:+.2f}" if f"{t}_change" in s else "-" for t in TASKS)
        ch = " / ".join(f"{s[f'{t}_change']:.3f}" if f"{t}_change" in s else "-" for t in TASKS)
        val = " ".join(f"{s[f'{t}_val']:7.4f}" if f"{t}_val" in s else f"{'-':>7}" for t in TASKS)
        print(f"{s['run']:<24} {s['seconds']:6.0f} {val} {s['val_score']:+.4f}  {pct:<36} {ch}")
        if args.copy_logs:
            Path(args.copy_logs).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / "log.csv", Path(args.copy_logs) / f"rsc_{run.name}_log.csv")


if __name__ == "__main__":
    main()
