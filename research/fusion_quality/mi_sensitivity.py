"""How much MI (the fusion metric: MI(F, IR) + MI(F, VIS) from 8-bit joint histograms) a small change of the VFN's
fused image costs, by the change's kind: dense noise, smooth fields, a global shift, a tone curve, and sparse local
changes of the same mean |change|. Why the customisation's change must be local to keep MI (issue 13).

    python research/fusion_quality/mi_sensitivity.py --ir runs/msrs_val_links/ir --vis runs/msrs_val_links/vi \\
        --fused runs/msrs_vfn_new --limit 12 --json docs/training/mi_sensitivity.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2
import numpy as np

from cldyn.evaluation.evaluate import read_gray
from cldyn.evaluation.metrics.information import mutual_information


def changes(f0: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Named changed copies of ``f0`` (0..255)."""
    out = {}
    for s in (0.5, 1.0, 2.0):
        out[f"dense Gaussian noise sigma {s}"] = f0 + rng.normal(0, s, f0.shape)
    for s in (4, 16, 64):
        field = cv2.GaussianBlur(rng.normal(0, 1, f0.shape), (0, 0), s)
        out[f"smooth random field (blur {s} px), mean |change| 1.3"] = f0 + field * 1.3 / np.abs(field).mean()
    out["global shift +1.3"] = f0 + 1.3
    out["tone curve (gamma 0.97)"] = 255 * (f0 / 255) ** 0.97
    for frac, amp in ((0.10, 10), (0.05, 20), (0.02, 50)):
        blob = cv2.GaussianBlur(rng.normal(0, 1, f0.shape), (0, 0), 16)
        region = blob > np.quantile(blob, 1 - frac)
        out[f"{frac:.0%} of the pixels (blobs) +{amp}, mean |change| {frac * amp:.1f}"] = f0 + amp * region
        g = f0.copy()
        mu = f0[region].mean()
        g[region] = mu + (f0[region] - mu) * (1 + amp / 50)
        out[f"{frac:.0%} of the pixels (blobs): local contrast x{1 + amp / 50:.1f}"] = g
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ir", required=True)
    ap.add_argument("--vis", required=True)
    ap.add_argument("--fused", required=True, help="the VFN's fused images (same names)")
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    names = sorted(os.listdir(args.ir))[:args.limit]  # the fused folder may hold more pairs
    rel: dict[str, list[float]] = {}
    change: dict[str, list[float]] = {}
    for name in names:
        # as `cldyn evaluate` scores them (cldyn convention: BT.601 luminance, 0..255, rounded)
        ir, vis, f0 = (read_gray(Path(folder, name), "cldyn") for folder in (args.ir, args.vis, args.fused))
        base = mutual_information(f0, ir, vis)
        for key, f in changes(f0, rng).items():
            f = np.clip(f, 0, 255)
            rel.setdefault(key, []).append(mutual_information(f, ir, vis) / base - 1)
            change.setdefault(key, []).append(float(np.abs(np.round(f) - np.round(f0)).mean()))
    out = {"pairs": names, "mi_relative_change": {k: float(np.mean(v)) for k, v in rel.items()},
           "mean_abs_change_grey_levels": {k: float(np.mean(v)) for k, v in change.items()}}
    for k in rel:
        change_k, mi_k = out["mean_abs_change_grey_levels"][k], out["mi_relative_change"][k]
        print(f"{k:60s} mean |change| {change_k:5.2f}  MI {mi_k:+.1%}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
