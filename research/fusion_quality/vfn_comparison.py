"""Side-by-side figure of two VFN checkpoints and SeAFusion (issue 15): the RoadScene demo pair's sky (zoomed) and
an MSRS night pair, columns infrared | visible | old VFN | new VFN | SeAFusion.

    python research/fusion_quality/vfn_comparison.py OLD.safetensors NEW.safetensors -o docs/figures/vfn_comparison.jpg

SeAFusion's fused images exist for the MSRS val pairs only (``../shared/data/peers/seafusion/msrs-val``); its
RoadScene panel says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from cldyn.data.io import read_image, read_pair, write_image
from cldyn.evaluation.flatness import ROADSCENE_SKY, window_std
from cldyn.inference.demo import demo_pairs, pair_title, side_by_side
from cldyn.inference.fuse import Fuser
from cldyn.weights import load_vfn_or_shipped

# The sky of roadscene_FLIR_04514 with the trees around it: the flat window (ROADSCENE_SKY) and its edges.
SKY_CROP = (slice(0, 120), slice(100, 380))
NIGHT_PAIR = "msrs_00854N"


def _note_panel(shape: tuple[int, ...], text: str) -> np.ndarray:
    panel = np.full((*shape[:2], 3), 0.85, np.float32)
    img = np.rint(panel * 255).astype(np.uint8)
    for i, line in enumerate(text.split("\n")):
        cv2.putText(img, line, (8, 40 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
    return img.astype(np.float32) / 255


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("old", help="the VFN shipped before")
    p.add_argument("new", help="the new VFN")
    p.add_argument("--peer", default="../shared/data/peers/seafusion/msrs-val", help="SeAFusion's MSRS val fusions")
    p.add_argument("-o", "--output", default="docs/figures/vfn_comparison.jpg")
    args = p.parse_args()
    fusers = [Fuser(load_vfn_or_shipped(w), device="cpu") for w in (args.old, args.new)]
    pairs = {q.name: q for q in demo_pairs()}
    rows, titles = [], []
    for name, crop in (("roadscene_FLIR_04514", SKY_CROP), (NIGHT_PAIR, None)):
        pair = pairs[name]
        ir, vis = read_pair(pair.ir, pair.vis)
        fused = [f.fuse_images(ir, vis) for f in fusers]
        peer = Path(args.peer) / f"{name.split('_', 1)[1]}.png"
        peer_img = read_image(peer).pixels if name.startswith("msrs") and peer.is_file() else None
        panels = [ir.pixels, vis.pixels, *fused]
        if crop is not None:
            panels = [x[crop] for x in panels]
            stds = [window_std(f, vis.pixels, ir.pixels) for f in fused]
            rows_, cols_ = ROADSCENE_SKY
            titles.append(f"{pair_title(pair)}: sky, zoomed. Std in the flat window (rows {rows_.start}-"
                          f"{rows_.stop - 1}, cols {cols_.start}-{cols_.stop - 1}): visible {stds[0].visible:.2f}, "
                          f"old {stds[0].fused:.2f}, new {stds[1].fused:.2f} (8-bit levels)")
        else:
            titles.append(f"{pair_title(pair)}: night")
        panels.append(peer_img if peer_img is not None else
                      _note_panel(panels[0].shape, "SeAFusion: no fused image\nfor RoadScene (peer outputs\n"
                                                   "cover MSRS val only)"))
        rows.append(panels)
    sheet = side_by_side(rows, ["infrared", "visible", "old VFN", "new VFN", "SeAFusion"], height=240,
                         titles=titles)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(out, sheet)  # format from the extension (.jpg keeps the README light)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
