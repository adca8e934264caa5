"""How far the package's NGF criterion moves pairs published as aligned, from the identity (corner shift, pixels,
and the affine warp found): the residual misalignment of the published pairs, as NGF sees it.

    python research/align/ngf.py ../shared/data/msrs val 10 affine
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from cldyn.data.io import luma, read_image, to_single_channel
from cldyn.data.pairs import discover_pairs
from cldyn.data.registration import Agreement, edge_points, refine_level, resized
from cldyn.data.rig import corner_error


def drift(root: str, split: str | None, n: int, model: str) -> None:
    torch.set_num_threads(1)
    pairs = discover_pairs([Path(root)], split)[0]
    for pair in pairs[:: max(1, len(pairs) // n)][:n]:
        ir = to_single_channel(read_image(pair.ir)).astype(np.float32)
        vis = luma(read_image(pair.vis).pixels).astype(np.float32)
        warp = np.eye(3)
        for level in (2, 1, 0):
            ir_l, m = resized(ir, 0.5 ** level)
            vis_l, mv = resized(vis, 0.5 ** level)
            lw = mv @ warp @ np.linalg.inv(m)
            for stage in (("translation", model) if level == 2 else (model,)):
                lw, _ = refine_level(Agreement(edge_points(ir_l), vis_l, lw, ir_l.shape, stage), 30)
            warp = np.linalg.inv(mv) @ lw @ m
        print(f"{pair.name}: corner shift {corner_error(warp, np.eye(3), ir.shape):.2f} px, "
              f"warp {np.round(warp[:2], 4).tolist()}", flush=True)


if __name__ == "__main__":
    drift(sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), sys.argv[4])
