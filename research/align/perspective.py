"""The homography's perspective prior: per random warp of N day (or night) pairs, the affine registration and the
homography at each prior weight (``AlignConfig.perspective_prior``), each with its confidence and its corner error
against the known warp composed with the same settings' registration of the published pair.

    python research/align/perspective.py ROOT SPLIT N [--priors 0 0.001 0.003 0.01] [--fine 2.0] [--seed S] [--night]

``--fine`` gives NGF's edge parameter on the finest level (``AlignConfig.fine_edge_share``), one set of rows each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cldyn.data.align import AlignConfig, AlignmentError, estimate_warp
from cldyn.data.io import luma, read_image, to_single_channel
from cldyn.data.pairs import discover_pairs
from cldyn.data.rig import corner_error, random_warp, warped_visible


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("split")
    ap.add_argument("n", type=int)
    ap.add_argument("--priors", type=float, nargs="+", default=[0.0, 0.001, 0.003, 0.01])
    ap.add_argument("--fine", type=float, nargs="+", default=[2.0], help="fine_edge_share values")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--night", action="store_true", help="MSRS night pairs (name ending N); default day (D)")
    a = ap.parse_args()
    pairs = discover_pairs([a.root], a.split or None)[0]
    if a.root.rstrip("/").endswith("msrs"):
        pairs = [p for p in pairs if p.name.endswith("N" if a.night else "D")]
    rng = np.random.default_rng(a.seed)
    pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), min(a.n, len(pairs)), replace=False))]
    configs = {"affine": AlignConfig(model="affine", min_confidence=0.0)}
    configs.update({f"homography {p:g} fine {f:g}": AlignConfig(model="homography", perspective_prior=p,
                                                                 fine_edge_share=f, min_confidence=0.0)
                    for p in a.priors for f in a.fine})
    errors: dict[str, list[float]] = {k: [] for k in configs}
    for pair in pairs:
        ir, vis = to_single_channel(read_image(pair.ir)), luma(read_image(pair.vis).pixels)
        true, canvas = random_warp(rng, ir.shape)
        moved = warped_visible(vis, true, canvas)
        t0, row = time.perf_counter(), {}
        for name, cfg in configs.items():
            try:
                ref = estimate_warp(ir, vis, cfg)[0]
                w, c = estimate_warp(ir, moved, cfg)
            except AlignmentError as exc:
                row[name] = exc.reason[:30]
                continue
            errors[name].append(corner_error(w, true @ ref, ir.shape))
            row[name] = f"{errors[name][-1]:.2f} ({c:.2f})"
        print(pair.name, f"{time.perf_counter() - t0:.0f}s", row, flush=True)
    for name, e in errors.items():
        e = np.array(e)
        print(f"{name}: known median {np.median(e):.2f} p95 {np.percentile(e, 95):.2f} max {e.max():.2f} (n {len(e)})")


if __name__ == "__main__":
    main()
