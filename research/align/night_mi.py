"""Night pairs: does mutual information of intensities prefer the known warp where the gradient fields do not?

For 12 MSRS val night pairs (seed 0) and one random warp each: the affine registration (confidence floor 0), its
corner error against the published alignment, and the mutual information (32 bins, the pixels the visible camera
sees) of the infrared image with the visible image resampled by the known warp and by the found one.

    python research/align/night_mi.py [ROOT]
"""

from __future__ import annotations

import sys

import numpy as np

from cldyn.data.align import AlignConfig, AlignmentError, estimate_warp, warp_to_infrared
from cldyn.data.io import luma, read_image, to_single_channel
from cldyn.data.pairs import discover_pairs
from cldyn.data.rig import corner_error, random_warp, warped_visible


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """MI (nats) of two images in [0, 1] over the pixels where ``b`` is not black (seen by the visible camera)."""
    seen = b > 0
    h, _, _ = np.histogram2d(a[seen].ravel(), b[seen].ravel(), bins=bins, range=[[0, 1], [0, 1]])
    p = h / h.sum()
    outer = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / outer[nz])).sum())


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/msrs"
    pairs = [p for p in discover_pairs([root], "val")[0] if p.name.endswith("N")]
    rng = np.random.default_rng(0)
    pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), 12, replace=False))]
    cfg = AlignConfig(model="affine", min_confidence=0.0)
    for pair in pairs:
        ir = to_single_channel(read_image(pair.ir)).astype(np.float32)
        vis = luma(read_image(pair.vis).pixels).astype(np.float32)
        true, canvas = random_warp(rng, ir.shape)
        moved = warped_visible(vis, true, canvas)
        try:
            warp, confidence = estimate_warp(ir, moved, cfg)
        except AlignmentError as exc:
            print(pair.name, "no warp:", exc.reason)
            continue
        # a floor of 1e-3 keeps dark pixels that the camera sees apart from the black outside its field
        at_true = mutual_information(ir, np.clip(warp_to_infrared(moved, true, ir.shape), 1e-3, 1))
        at_found = mutual_information(ir, np.clip(warp_to_infrared(moved, warp, ir.shape), 1e-3, 1))
        print(f"{pair.name} confidence {confidence:.2f} error against the published alignment "
              f"{corner_error(warp, true, ir.shape):.1f} px; MI at the known warp {at_true:.3f}, at the found "
              f"{at_found:.3f}")


if __name__ == "__main__":
    main()
