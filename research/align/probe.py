"""ECC on edge maps (``ecc.py``) against the package's NGF registration on a few MSRS val pairs redrawn by random
warps (``cldyn.data.rig``): corner errors and confidences.  python research/align/probe.py [N] [MODEL]"""
import sys
import time

import numpy as np
from ecc import estimate_warp_ecc

from cldyn.data.align import AlignConfig, AlignmentError, estimate_warp
from cldyn.data.io import luma, read_image, to_single_channel
from cldyn.data.pairs import discover_pairs
from cldyn.data.rig import corner_error, random_warp, warped_visible

n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
model = sys.argv[2] if len(sys.argv) > 2 else "affine"
pairs, _ = discover_pairs(["../shared/data/msrs"], "val")
rng = np.random.default_rng(0)
for p in pairs[::max(1, len(pairs) // n)][:n]:
    ir, vis = to_single_channel(read_image(p.ir)), luma(read_image(p.vis).pixels)
    true, canvas = random_warp(rng, ir.shape)
    moved = warped_visible(vis, true, canvas)
    for name in ("ecc", "ngf"):
        t0 = time.perf_counter()
        try:
            w, score = estimate_warp_ecc(ir, moved, model) if name == "ecc" else \
                estimate_warp(ir, moved, AlignConfig(model=model, min_confidence=-1))
            print(f"{p.name} {name}: corner error {corner_error(w, true, ir.shape):7.2f} px (against the published "
                  f"alignment), score {score:.2f}, {time.perf_counter() - t0:.2f} s")
        except AlignmentError as e:
            print(f"{p.name} {name}: refused, {e}")
