"""Mutual information on night pairs, for 12 MSRS val night pairs (seed 0) and one random warp each, registered with
the affine model (confidence floor 0):

- does MI (32 bins, the pixels the visible camera sees) prefer the known warp where the gradient fields do not?
- as a second confidence, how sharply does MI peak over shifts (the same peak-to-sidelobe ratio as the gradient
  fields' confidence), for the found warps of night pairs (right and wrong) and of unrelated pairs?

    python research/align/mi_confidence.py [ROOT] [N]
"""

from __future__ import annotations

import sys

import numpy as np

from cldyn.data.align import AlignConfig, AlignmentError, estimate_warp, warp_to_infrared
from cldyn.data.confidence import registered_canvas
from cldyn.data.io import luma, read_image, to_single_channel
from cldyn.data.pairs import discover_pairs
from cldyn.data.registration import peak_sharpness
from cldyn.data.rig import corner_error, random_warp, warped_visible


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """MI (nats) of two images in [0, 1] over the pixels where ``b`` is not black (seen by the visible camera)."""
    seen = b > 0
    h, _, _ = np.histogram2d(a[seen].ravel(), b[seen].ravel(), bins=bins, range=[[0, 1], [0, 1]])
    p = h / h.sum()
    outer = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / outer[nz])).sum())


def mi_surface(ir: np.ndarray, canvas: np.ndarray, pad: tuple[int, int], bins: int = 32) -> np.ndarray:
    """``(2 py + 1, 2 px + 1)`` MI of ``ir`` with each shifted window of ``canvas`` (32 bins)."""
    h, w = ir.shape
    a = np.clip((ir * bins).astype(np.int64), 0, bins - 1).ravel()
    b_all = np.clip((canvas * bins).astype(np.int64), 0, bins - 1)
    out = np.zeros((2 * pad[0] + 1, 2 * pad[1] + 1))
    for dy in range(2 * pad[0] + 1):
        for dx in range(2 * pad[1] + 1):
            joint = np.bincount(a * bins + b_all[dy:dy + h, dx:dx + w].ravel(), minlength=bins * bins)
            p = joint.reshape(bins, bins) / a.size
            outer = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
            nz = p > 0
            out[dy, dx] = (p[nz] * np.log(p[nz] / outer[nz])).sum()
    return out


def mi_confidence(ir: np.ndarray, vis: np.ndarray, warp: np.ndarray, f: float = 0.25, reach: float = 0.1) -> float:
    """Peak sharpness of the MI over shifts up to ``reach`` of the frame, at ``f`` of the infrared size."""
    ir_l, canvas, pad = registered_canvas(ir, vis, warp, f, 0.0, reach)
    return peak_sharpness(mi_surface(ir_l, canvas, pad), max(1, round(0.02 * max(ir_l.shape))))


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/msrs"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    all_pairs = discover_pairs([root], "val")[0]
    rng = np.random.default_rng(0)
    night = [p for p in all_pairs if p.name.endswith("N")]
    night = [night[i] for i in sorted(rng.choice(len(night), n, replace=False))]
    cfg = AlignConfig(model="affine", min_confidence=0.0)
    for kind, pairs in (("night", night), ("unrelated", night)):
        for i, pair in enumerate(pairs):
            ir = to_single_channel(read_image(pair.ir)).astype(np.float32)
            other = pair if kind == "night" else pairs[(i + n // 2) % n]
            vis = luma(read_image(other.vis).pixels).astype(np.float32)
            true, canvas = random_warp(rng, ir.shape)
            moved = warped_visible(vis, true, canvas)
            try:
                warp, conf = estimate_warp(ir, moved, cfg)
            except AlignmentError as exc:
                print(kind, pair.name, "no warp:", exc.reason)
                continue
            line = f"{kind} {pair.name} NGF confidence {conf:.2f}, MI confidence {mi_confidence(ir, moved, warp):.2f}"
            if kind == "night":
                # a floor of 1e-3 keeps dark pixels that the camera sees apart from the black outside its field
                at_true = mutual_information(ir, np.clip(warp_to_infrared(moved, true, ir.shape), 1e-3, 1))
                at_found = mutual_information(ir, np.clip(warp_to_infrared(moved, warp, ir.shape), 1e-3, 1))
                line += (f"; error against the published alignment {corner_error(warp, true, ir.shape):.1f} px, MI "
                         f"at the known warp {at_true:.3f}, at the found {at_found:.3f}")
            print(line, flush=True)


if __name__ == "__main__":
    main()
