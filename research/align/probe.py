"""Quick probe of cldyn.data.align on a few MSRS val pairs with random warps: corner errors, confidences, unrelated."""
import sys
import time

import numpy as np
from align import AlignConfig, AlignmentError, estimate_warp
from bench_align import _pair_images, corner_error, random_warp, warped_visible

from cldyn.data.io import luma
from cldyn.data.pairs import discover_pairs

n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
model = sys.argv[2] if len(sys.argv) > 2 else "affine"
pairs, _ = discover_pairs(["../shared/data/msrs"], "val")
rng = np.random.default_rng(0)
cfg = AlignConfig(model=model, min_confidence=-1)
for p in pairs[::max(1, len(pairs) // n)][:n]:
    ir, vis = _pair_images(p)
    true = random_warp(rng, ir.shape)
    moved = warped_visible(vis, true, ir.shape)
    t0 = time.perf_counter()
    try:
        w, rho = estimate_warp(ir, luma(moved), cfg)
        print(f"{p.name} {moved.shape} err {corner_error(w, true, ir.shape):7.2f} rho {rho:.3f} "
              f"{time.perf_counter() - t0:.2f}s")
    except AlignmentError as e:
        print(p.name, "FAIL", e)
    j = rng.integers(len(pairs))
    _, other = _pair_images(pairs[j])
    try:
        w, rho = estimate_warp(ir, luma(warped_visible(other, true, ir.shape)), cfg)
        print(f"   unrelated rho {rho:.3f}")
    except AlignmentError as e:
        print("   unrelated FAIL", e)
