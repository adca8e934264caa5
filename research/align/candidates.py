"""Night pairs: is the right warp among the search's starts, and which confidence would pick it?

For the benchmark's MSRS val warps (seed 0, redrawn as in ``criteria.py``), the ``--keep`` best starts of the
coarse shift search (and the rig's centred start) are each refined over every level, and for each refined warp the
known corner error, the NGF agreement at the finest level, the shipped confidence (``raw_h``) and the confidence on
locally contrast-normalised images (``lcn_h``) are recorded. ``summary`` then compares ways of choosing among them.

    python research/align/candidates.py run ../shared/data/msrs val OUT.json [--keep 10] [--night-only]
    python research/align/candidates.py summary OUT.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
from bench_warps import referenced_warps

from cldyn.data.align import AlignConfig, AlignmentError, _refine, estimate_warp, initial_warps
from cldyn.data.confidence import pair_local_contrast, registration_confidence
from cldyn.data.pairs import discover_pairs
from cldyn.data.registration import blurred_level
from cldyn.data.rig import corner_error


def refined_candidates(ir: np.ndarray, vis: np.ndarray, cfg: AlignConfig, keep: int) -> list[dict]:
    """Every start of :func:`estimate_warp`'s search (``keep`` of them, and the centred one), refined alone."""
    work = min(1.0, cfg.work_side / max(ir.shape))
    base = float(np.sqrt(vis.size / ir.size))
    levels = max(1, min(cfg.levels, 1 + int(np.log2(max(1.0, work * max(ir.shape) / 80)))))
    top = work / 2 ** (levels - 1)
    ir_c, m_ir = blurred_level(ir, top, cfg.blur)
    vis_c, m_vis = blurred_level(vis, top / base, cfg.blur)
    starts = [np.linalg.inv(m_vis) @ w @ m_ir for w in initial_warps(ir_c, vis_c, 1.0, cfg.scales, cfg.angles, keep)]
    starts.append(np.array([[base, 0, (vis.shape[1] - 1) / 2 - base * (ir.shape[1] - 1) / 2],
                            [0, base, (vis.shape[0] - 1) / 2 - base * (ir.shape[0] - 1) / 2], [0, 0, 1]]))
    lir, lvis = pair_local_contrast(ir, vis, 8.0)
    out = []
    for rank, start in enumerate(starts):
        try:
            warp = _refine(ir, vis, [start], cfg, work, levels)
        except AlignmentError:
            continue
        out.append({"rank": rank, "warp": warp.tolist(),
                    "raw_h": registration_confidence(ir, vis, warp, work / 2, cfg.blur),
                    "lcn_h": registration_confidence(lir, lvis, warp, work / 2, cfg.blur)})
    return out


def run(root: str, split: str, out: str, keep: int, night_only: bool) -> None:
    cfg = AlignConfig()
    free = replace(cfg, min_confidence=-np.inf)
    pairs = discover_pairs([root], split)[0]
    rows, t0 = [], time.time()
    for pair, k, ir, moved, target in referenced_warps(pairs, night_only):
        cands = refined_candidates(ir, moved, cfg, keep)
        for c in cands:
            c["known_px"] = corner_error(np.array(c["warp"]), target, ir.shape)
        try:
            shipped = corner_error(estimate_warp(ir, moved, free)[0], target, ir.shape)
        except AlignmentError:
            shipped = None
        rows.append({"pair": pair.name, "k": k, "shipped_px": shipped, "candidates": cands})
        print(pair.name, k, f"{time.time() - t0:.0f} s", flush=True)
    with open(out, "w") as fh:
        json.dump(rows, fh)


def summary(path: str) -> None:
    with open(path) as fh:
        rows = json.load(fh)
    print(f"{len(rows)} warps")
    best = np.array([min((c["known_px"] for c in r["candidates"]), default=np.inf) for r in rows])
    shipped = np.array([r["shipped_px"] if r["shipped_px"] is not None else np.inf for r in rows])
    print(f"some candidate within 3 px: {(best < 3).sum()}; shipped within 3 px: {(shipped < 3).sum()}")
    for key in ("raw_h", "lcn_h"):
        for thr in (4.0, 4.5):
            chosen = [max(r["candidates"], key=lambda c: c[key]) for r in rows if r["candidates"]]
            ok = [c for c in chosen if c[key] >= thr]
            err = np.array([c["known_px"] for c in ok])
            print(f"choose by {key}, accept >= {thr}: accepted {len(ok)} of {len(rows)}, within 3 px "
                  f"{(err < 3).sum()}, over 10 px {(err > 10).sum()}, median {np.median(err):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("run", "summary"))
    ap.add_argument("args", nargs="+")
    ap.add_argument("--keep", type=int, default=10)
    ap.add_argument("--night-only", action="store_true")
    a = ap.parse_args()
    if a.what == "run":
        run(*a.args, keep=a.keep, night_only=a.night_only)
    else:
        summary(a.args[0])


if __name__ == "__main__":
    main()
