"""The first registration probe, kept as the baseline that the package's method was measured against: coarse-to-fine
ECC (Evangelidis & Psarakis, TPAMI 2008; :func:`cv2.findTransformECC`) on edge maps, from a phase-correlation start.

    python research/align/probe.py 8 affine     # ECC against the package's NGF registration on random warps
"""

from __future__ import annotations

import cv2
import numpy as np

from cldyn.data.align import AlignmentError, check_range, edge_map

_MOTION = {"translation": cv2.MOTION_TRANSLATION, "affine": cv2.MOTION_AFFINE, "homography": cv2.MOTION_HOMOGRAPHY}
SCALES = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1)


def _scaled(matrix: np.ndarray, factor: float) -> np.ndarray:
    s = np.diag([factor, factor, 1.0])
    return s @ matrix @ np.linalg.inv(s)


def _start(ir_e: np.ndarray, vis_e: np.ndarray) -> np.ndarray:
    """Scale and shift that best overlay the edge maps by phase correlation (no rotation)."""
    h, w = ir_e.shape
    base = np.sqrt(vis_e.size / ir_e.size)
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    centre = np.array([vis_e.shape[1] / 2, vis_e.shape[0] / 2])
    best, best_warp = -1.0, np.eye(3)
    for f in SCALES:
        to_canvas = cv2.getRotationMatrix2D(tuple(centre), 0.0, 1 / (base * f))
        to_canvas[:, 2] += np.array([w / 2, h / 2]) - centre
        (sx, sy), response = cv2.phaseCorrelate(ir_e, cv2.warpAffine(vis_e, to_canvas, (w, h)), window)
        if response > best:
            best = response
            shift = np.array([[1, 0, sx], [0, 1, sy], [0, 0, 1]], np.float64)
            best_warp = np.linalg.inv(np.vstack([to_canvas, [0, 0, 1]])) @ shift
    return best_warp


def estimate_warp_ecc(ir: np.ndarray, vis: np.ndarray, model: str = "affine", levels: int = 3,
                      work_side: int = 640) -> tuple[np.ndarray, float]:
    """``(warp, edge correlation)``: infrared -> visible pixels, by ECC on edge maps coarse to fine."""
    work = min(1.0, work_side / max(ir.shape))
    ir_e = edge_map(cv2.resize(ir.astype(np.float32), None, fx=work, fy=work, interpolation=cv2.INTER_AREA))
    vis_e = edge_map(cv2.resize(vis.astype(np.float32), None, fx=work, fy=work, interpolation=cv2.INTER_AREA))
    top = 2 ** (levels - 1)
    small = [cv2.resize(e, None, fx=1 / top, fy=1 / top, interpolation=cv2.INTER_AREA) for e in (ir_e, vis_e)]
    warp = _scaled(_start(*small), top)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 60, 1e-5)
    rho = -1.0
    for level in range(levels - 1, -1, -1):
        f = 1 / 2 ** level
        t, v = ((cv2.resize(e, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if level else e) for e in (ir_e, vis_e))
        m = _scaled(warp, f)
        m = (m / m[2, 2]).astype(np.float32) if model == "homography" else m[:2].astype(np.float32)
        try:
            rho, m = cv2.findTransformECC(t, v, m, _MOTION[model], criteria, None, 5)
        except cv2.error:
            raise AlignmentError("the edge correlation did not converge") from None
        warp = _scaled((np.vstack([m, [0, 0, 1]]) if m.shape[0] == 2 else m).astype(np.float64), 1 / f)
    warp = _scaled(warp, 1 / work)
    if problem := check_range(warp, ir.shape[:2], vis.shape[:2]):
        raise AlignmentError(problem, float(rho))
    return warp, float(rho)
