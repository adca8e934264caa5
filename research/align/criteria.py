"""Acceptance criteria on the warps of ``cldyn bench align`` (seed 0): which confidences would accept more of the
right warps (night pairs above all) without accepting unrelated pairs or wrong warps.

The MSRS val warps of the benchmark are redrawn with its seed (the first set consumes the generator first) and
registered with no confidence threshold; at each found warp several confidences are computed: the shipped one
(NGF peak sharpness at half the working size), the same at other sizes, and on locally contrast-normalised images
(``night.py``'s local z-score, sigma 8 px). Unrelated pairs (an infrared image with another scene's visible image,
randomly warped) get the same. Rows go to a JSON file; ``--summary`` prints the criteria's outcomes.

    python research/align/criteria.py run ../shared/data/msrs val OUT.json [--unrelated 60] [--night-only]
        [--roadscene ../shared/data/roadscene]
    python research/align/criteria.py summary OUT.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
from bench_warps import benchmark_warps, unrelated_pairs

from cldyn.data.align import AlignConfig, AlignmentError, estimate_warp
from cldyn.data.confidence import pair_local_contrast, registration_confidence
from cldyn.data.io import luma
from cldyn.data.pairs import discover_pairs
from cldyn.data.rig import corner_error, warped_visible

SIZES = {"q": 0.25, "h": 0.5, "f": 1.0}  # of the working size (640 px on the longer side)


def confidences(ir: np.ndarray, vis: np.ndarray, warp: np.ndarray) -> dict[str, float]:
    work = min(1.0, 640 / max(ir.shape))
    out = {}
    for tag, f in SIZES.items():
        out[f"raw_{tag}"] = registration_confidence(ir, vis, warp, work * f, 1.0)
    lir, lvis = pair_local_contrast(ir, vis, 8.0)
    for tag, f in SIZES.items():
        out[f"lcn_{tag}"] = registration_confidence(lir, lvis, warp, work * f, 1.0)
    return out


def register(ir, vis, cfg) -> tuple[np.ndarray | None, str | None]:
    try:
        return estimate_warp(ir, vis, cfg)[0], None
    except AlignmentError as exc:
        return None, exc.reason


def run(root: str, split: str, out: str, unrelated: int, night_only: bool, roadscene: str | None) -> None:
    cfg = replace(AlignConfig(), min_confidence=-np.inf)
    pairs = discover_pairs([root], split)[0]
    rng = np.random.default_rng(0)  # the benchmark's seed: its MSRS warps, then its RoadScene warps, in its order
    rows = []
    t0 = time.time()
    sets = [("msrs", pairs, 3)] + ([("roadscene", discover_pairs([roadscene], None)[0], 1)] if roadscene else [])
    for name, set_pairs, per_pair in sets:
        for pair, ir, vis, warps in benchmark_warps(set_pairs, per_pair, rng):
            if (night_only and not pair.name.endswith("N")) or (roadscene and name == "msrs"):
                continue
            reference, _ = register(ir, luma(vis), cfg)
            for k, (true, canvas) in enumerate(warps):
                moved = luma(warped_visible(vis, true, canvas))
                warp, reason = register(ir, moved, cfg)
                row = {"set": name, "pair": pair.name, "k": k, "kind": "warp", "failure": reason}
                if warp is not None:
                    row.update(confidences(ir, moved, warp), published_px=corner_error(warp, true, ir.shape))
                    if reference is not None:
                        row["known_px"] = corner_error(warp, true @ reference, ir.shape)
                rows.append(row)
            print(pair.name, f"{time.time() - t0:.0f} s", flush=True)
    for name, ir, moved in unrelated_pairs(pairs, unrelated):
        warp, reason = register(ir, moved, cfg)
        row = {"pair": name, "kind": "unrelated", "failure": reason}
        if warp is not None:
            row.update(confidences(ir, moved, warp))
        rows.append(row)
    with open(out, "w") as fh:
        json.dump(rows, fh, indent=1)
    print(f"{len(rows)} rows in {time.time() - t0:.0f} s -> {out}")


def summary(path: str) -> None:
    with open(path) as fh:
        rows = json.load(fh)
    warps = [r for r in rows if r["kind"] == "warp"]
    unrel = [r for r in rows if r["kind"] == "unrelated"]
    keys = [k for k in warps[0] if k.startswith(("raw_", "lcn_"))] if warps else []

    def value(r, k):
        return r.get(k, -np.inf)

    criteria = {"shipped (raw_h >= 4)": lambda r: value(r, "raw_h") >= 4}
    for k in keys:
        for t in (3.0, 4.0, 5.0):
            criteria[f"raw_h >= 4 or {k} >= {t}"] = lambda r, k=k, t=t: value(r, "raw_h") >= 4 or value(r, k) >= t
    for t in (3.0, 3.5, 4.0):
        criteria[f"max(raw_h, lcn_h) >= {t}"] = lambda r, t=t: max(value(r, "raw_h"), value(r, "lcn_h")) >= t
        criteria[f"raw_h + lcn_h >= {2 * t}"] = lambda r, t=t: value(r, "raw_h") + value(r, "lcn_h") >= 2 * t
    night = np.array([r.get("set", "msrs") == "msrs" and r["pair"].endswith("N") for r in warps])
    known = np.array([r.get("known_px", np.nan) for r in warps])
    print(f"{len(warps)} warps ({night.sum()} night), {len(unrel)} unrelated")
    print("criterion | failed | night failed | known median / p95 of accepted | accepted > 10 px | unrelated accepted")
    for name, ok in criteria.items():
        acc = np.array([ok(r) for r in warps])
        u = sum(ok(r) for r in unrel)
        k = known[acc & np.isfinite(known)]
        print(f"{name} | {100 * (1 - acc.mean()):.1f}% | {100 * (1 - acc[night].mean()) if night.any() else 0:.1f}% | "
              f"{np.median(k):.2f} / {np.percentile(k, 95):.2f} | {(k > 10).sum()} | {u} of {len(unrel)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("run", "summary"))
    ap.add_argument("args", nargs="+")
    ap.add_argument("--unrelated", type=int, default=60)
    ap.add_argument("--night-only", action="store_true")
    ap.add_argument("--roadscene", help="RoadScene's root: its warps (one a pair, after MSRS's) instead of MSRS's")
    a = ap.parse_args()
    if a.what == "run":
        run(*a.args, unrelated=a.unrelated, night_only=a.night_only, roadscene=a.roadscene)
    else:
        summary(a.args[0])


if __name__ == "__main__":
    main()
