"""Flat-sky noise of VFN fusions on the RoadScene demo pair (issue 15): std of the fused luminance in the clear-sky
window against the visible image's.

    python research/fusion_quality/sky_window.py                              # the shipped VFN
    python research/fusion_quality/sky_window.py runs/vfn_b/best.safetensors  # checkpoints
"""

from __future__ import annotations

import argparse

from cldyn.data.io import read_pair
from cldyn.evaluation.compare import vfn_method_name
from cldyn.evaluation.flatness import ROADSCENE_SKY, window_std
from cldyn.inference.demo import demo_pairs
from cldyn.inference.fuse import Fuser
from cldyn.weights import load_vfn_or_shipped


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("weights", nargs="*", help="VFN checkpoints (default: the shipped VFN)")
    args = p.parse_args()
    pair = next(q for q in demo_pairs() if q.name == "roadscene_FLIR_04514")
    ir, vis = read_pair(pair.ir, pair.vis)
    rows, cols = ROADSCENE_SKY
    print(f"{pair.name}, rows {rows.start}-{rows.stop - 1}, columns {cols.start}-{cols.stop - 1} (8-bit levels)")
    for w in args.weights or [None]:
        fused = Fuser(load_vfn_or_shipped(w), device="cpu").fuse_images(ir, vis)
        s = window_std(fused, vis.pixels, ir.pixels)
        print(f"  {vfn_method_name(w):30s} fused std {s.fused:5.2f}  visible {s.visible:5.2f}  infrared "
              f"{s.infrared:5.2f}  ratio {s.ratio:4.2f}")


if __name__ == "__main__":
    main()
