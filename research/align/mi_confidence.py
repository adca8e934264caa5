"""A second confidence from mutual information: how sharply the MI of the infrared image with the registered visible
image peaks over shifts (the same peak-to-sidelobe ratio as the gradient fields' confidence), for the found warps of
night pairs (right and wrong) and of unrelated pairs. Can it accept what the gradient fields refuse, and still
refuse unrelated pairs?

    python research/align/mi_confidence.py [ROOT] [N]
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from cldyn.data.align import AlignConfig, AlignmentError, estimate_warp
from cldyn.data.io import luma, read_image, to_single_channel
from cldyn.data.pairs import discover_pairs
from cldyn.data.registration import peak_sharpness, resized
from cldyn.data.rig import corner_error, random_warp, warped_visible


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
    ir_l, m_ir = resized(ir, f)
    scale = float(np.sqrt(abs(np.linalg.det(warp[:2, :2]))))
    vis_l, m_vis = resized(vis, f / scale)
    h, w = ir_l.shape
    py, px = max(2, round(reach * h)), max(2, round(reach * w))
    to_vis = m_vis @ warp @ np.linalg.inv(m_ir) @ np.array([[1, 0, -px], [0, 1, -py], [0, 0, 1]], np.float64)
    canvas = cv2.warpPerspective(vis_l, to_vis, (w + 2 * px, h + 2 * py), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REPLICATE)
    return peak_sharpness(mi_surface(ir_l, canvas, (py, px)), max(1, round(0.02 * max(h, w))))


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
            err = corner_error(warp, true, ir.shape) if kind == "night" else float("nan")
            print(f"{kind} {pair.name} error {err:.1f} px, NGF confidence {conf:.2f}, MI confidence "
                  f"{mi_confidence(ir, moved, warp):.2f}", flush=True)


if __name__ == "__main__":
    main()
