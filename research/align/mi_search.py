"""Night pairs: does a start searched by mutual information land where the gradient fields' search does not?

The shipped start (:func:`cldyn.data.align.initial_warps`) scores every shift of the rotated and scaled visible image
by the NGF agreement. Here every shift is scored by the mutual information of the two images instead: both are cut
into ``bins`` equally populated intensity bins (a dark night image still fills every bin), and the joint histogram
at every shift is ``bins**2`` cross-correlations of bin indicator images (FFT). For the benchmark's MSRS val warps
(seed 0, as ``candidates.py`` draws them) it records the known corner error of the MI search's best start, of the
NGF refinement from the MI starts (and the shipped search's result), and the shipped confidence at each.

    python research/align/mi_search.py run ../shared/data/msrs val OUT.json [--night-only] [--bins 16] [--size 0.25]
        [--sigma 8] [--keep 3]
    python research/align/mi_search.py summary OUT.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import cv2
import numpy as np
from bench_warps import referenced_warps

from cldyn.data.align import AlignConfig, AlignmentError, _refine, canvas_transform, estimate_warp, pair_confidence
from cldyn.data.confidence import local_contrast
from cldyn.data.pairs import discover_pairs
from cldyn.data.registration import blurred_level
from cldyn.data.rig import corner_error


def quantile_bins(img: np.ndarray, bins: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Each pixel's bin among ``bins`` equally populated ones (over the pixels of ``mask``)."""
    values = img[mask] if mask is not None else img.ravel()
    edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, img, side="right")


def mi_surface(ir: np.ndarray, canvas: np.ndarray, valid: np.ndarray, pad: tuple[int, int], bins: int,
               min_overlap: float = 0.6) -> np.ndarray:
    """``(2 py + 1, 2 px + 1)`` mutual information (nats) of ``ir`` with the window of ``canvas`` at every shift,
    counting only canvas pixels where ``valid``; shifts whose overlap is under ``min_overlap`` of the frame: -inf."""
    size = canvas.shape
    a = np.stack([quantile_bins(ir, bins) == i for i in range(bins)]).astype(np.float64)
    cb = quantile_bins(canvas, bins, valid > 0.5)
    b = np.stack([(cb == j) & (valid > 0.5) for j in range(bins)]).astype(np.float64)
    fa = np.conj(np.fft.rfft2(a, s=size))
    fb = np.fft.rfft2(b, s=size)
    py, px = pad
    joint = np.fft.irfft2(fa[:, None] * fb[None], s=size)[:, :, : 2 * py + 1, : 2 * px + 1]
    joint = np.clip(joint, 0, None)
    n = joint.sum((0, 1))
    p = joint / np.maximum(n, 1)
    pi, pj = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 1e-12, p * np.log(p / (pi * pj)), 0.0)
    mi = terms.sum((0, 1))
    mi[n < min_overlap * ir.size] = -np.inf
    return mi


def mi_initial_warps(ir: np.ndarray, vis: np.ndarray, scales, angles, keep: int, bins: int,
                     reach: float = 0.25) -> list[tuple[float, np.ndarray]]:
    """:func:`cldyn.data.align.initial_warps` with every shift scored by mutual information."""
    h, w = ir.shape
    py, px = round(reach * h), round(reach * w)
    found = []
    for s in scales:
        for angle in angles:
            to_canvas = canvas_transform(vis.shape, ir.shape, s, angle, (py, px))
            dsize = (w + 2 * px, h + 2 * py)
            canvas = cv2.warpAffine(vis, to_canvas, dsize, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
            valid = cv2.warpAffine(np.ones_like(vis), to_canvas, dsize, flags=cv2.INTER_NEAREST)
            surface = mi_surface(ir, canvas, valid, (py, px), bins)
            iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
            shift = np.array([[1, 0, ix], [0, 1, iy], [0, 0, 1]], np.float64)
            found.append((float(surface[iy, ix]), np.linalg.inv(np.vstack([to_canvas, [0, 0, 1]])) @ shift))
    found.sort(key=lambda r: -r[0])
    return found[:keep]


def run(root: str, split: str, out: str, night_only: bool, bins: int, size: float, keep: int,
        sigma: float) -> None:
    cfg = AlignConfig()
    free = replace(cfg, min_confidence=-np.inf)
    pairs = discover_pairs([root], split)[0]
    rows, t0 = [], time.time()
    for pair, k, ir, moved, target in referenced_warps(pairs, night_only):
        row = {"pair": pair.name, "k": k}
        try:
            row["shipped_px"] = corner_error(estimate_warp(ir, moved, free)[0], target, ir.shape)
        except AlignmentError:
            row["shipped_px"] = None
        t = time.time()
        base = float(np.sqrt(moved.size / ir.size))
        ir_c, m_ir = blurred_level(ir, size, cfg.blur)
        vis_c, m_vis = blurred_level(moved, size / base, cfg.blur)
        if sigma:  # local contrast first: the low-frequency shading of the two cameras does not correspond
            ir_c, vis_c = local_contrast(ir_c, sigma * size), local_contrast(vis_c, sigma * size)
        found = mi_initial_warps(ir_c, vis_c, cfg.scales, cfg.angles, keep, bins)
        starts = [np.linalg.inv(m_vis) @ m @ m_ir for _, m in found]
        row["mi_s"] = time.time() - t
        row["mi_px"] = [corner_error(s, target, ir.shape) for s in starts]
        row["mi_value"] = [v for v, _ in found]
        try:
            warp = _refine(ir, moved, starts, cfg, 1.0, 3)
            row["refined_px"] = corner_error(warp, target, ir.shape)
            row["refined_conf"] = pair_confidence(ir, moved, warp, 0.5, cfg)
        except AlignmentError:
            row["refined_px"], row["refined_conf"] = None, None
        rows.append(row)
        print(pair.name, k, f"{time.time() - t0:.0f} s", rows[-1]["mi_px"][0], rows[-1]["refined_px"],
              rows[-1]["shipped_px"], flush=True)
    with open(out, "w") as fh:
        json.dump(rows, fh)


def summary(path: str) -> None:
    with open(path) as fh:
        rows = json.load(fh)
    for part, keep in (("night", lambda r: r["pair"].endswith("N")), ("day", lambda r: r["pair"].endswith("D"))):
        rs = [r for r in rows if keep(r)]
        if not rs:
            continue
        inf = float("inf")
        mi1 = np.array([r["mi_px"][0] for r in rs])
        mik = np.array([min(r["mi_px"]) for r in rs])
        ref = np.array([r["refined_px"] if r["refined_px"] is not None else inf for r in rs])
        conf = np.array([r["refined_conf"] if r["refined_conf"] is not None else -inf for r in rs])
        ship = np.array([r["shipped_px"] if r["shipped_px"] is not None else inf for r in rs])
        print(f"{part}: {len(rs)} warps; MI start s per warp {np.mean([r['mi_s'] for r in rs]):.2f}")
        for name, e in (("MI best start", mi1), ("MI best of kept starts", mik), ("NGF refined from MI starts", ref),
                        ("shipped (no threshold)", ship)):
            print(f"  {name:28s} within 3 px {(e < 3).sum():3d}, within 8 px {(e < 8).sum():3d}, "
                  f"median {np.median(e):.2f}")
        ok = conf >= 4
        print(f"  refined from MI, confidence >= 4: accepted {ok.sum()}, within 3 px {(ok & (ref < 3)).sum()}, "
              f"over 10 px {(ok & (ref > 10)).sum()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("run", "summary"))
    ap.add_argument("args", nargs="+")
    ap.add_argument("--night-only", action="store_true")
    ap.add_argument("--bins", type=int, default=16)
    ap.add_argument("--size", type=float, default=0.25)
    ap.add_argument("--keep", type=int, default=3)
    ap.add_argument("--sigma", type=float, default=8.0, help="local contrast window, full-size pixels (0: none)")
    a = ap.parse_args()
    if a.what == "run":
        run(*a.args, night_only=a.night_only, bins=a.bins, size=a.size, keep=a.keep,
            sigma=a.sigma)
    else:
        summary(a.args[0])


if __name__ == "__main__":
    main()
