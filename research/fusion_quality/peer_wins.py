"""Count, for each method of a ``cldyn evaluate`` result, the metrics on which it scores at least as well as a peer
(issue 15's selection rule for VFN checkpoints: the most metrics at or above SeAFusion on the MSRS val pairs,
ties broken by the run's 16-pair selection score).

    python research/fusion_quality/peer_wins.py runs/eval_n234/metrics.json --peer SeAFusion
"""

from __future__ import annotations

import argparse
import json

from cldyn.evaluation.metrics import DIRECTION


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("metrics_json", help="metrics.json written by cldyn evaluate")
    p.add_argument("--peer", default="SeAFusion", help="the method to compare against")
    args = p.parse_args()
    with open(args.metrics_json) as fh:
        table = json.load(fh)
    peer = table[args.peer]
    keys = [k for k in peer if k in DIRECTION]
    for name, row in table.items():
        if name == args.peer:
            continue
        wins = [k for k in keys if (row[k] >= peer[k] if DIRECTION[k] == "higher" else row[k] <= peer[k])]
        gaps = " ".join(f"{k} {100 * (row[k] / peer[k] - 1):+.2f}%" for k in keys)
        print(f"{name}: {len(wins)} of {len(keys)} at or above {args.peer} ({', '.join(wins)}); {gaps}")


if __name__ == "__main__":
    main()
