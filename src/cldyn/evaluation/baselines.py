"""Classical fusion baselines, on float luminance arrays ``(H, W)`` in [0, 1] (IR, visible Y) -> fused Y.

Used as reference rows by ``cldyn evaluate`` and the experiment report: infrared only, visible only, average,
max-luminance, Laplacian pyramid (Burt & Adelson 1983: average of the coarsest level, max-absolute selection of the
detail levels) and DWT (PyWavelets, ``db1``, 3 levels: average approximation, max-absolute detail coefficients).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pywt

Baseline = Callable[[np.ndarray, np.ndarray], np.ndarray]


def infrared_only(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    return ir


def visible_only(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    return vis


def average(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    return (ir + vis) / 2


def max_luminance(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    return np.maximum(ir, vis)


def _pick_abs_max(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) >= np.abs(y), x, y)


def laplacian_pyramid(ir: np.ndarray, vis: np.ndarray, levels: int = 4) -> np.ndarray:
    """Laplacian-pyramid fusion; ``levels`` is reduced for small images so every level keeps >= 2 pixels."""
    levels = max(0, min(levels, int(np.log2(max(1, min(ir.shape)))) - 1))

    def pyramid(img: np.ndarray) -> list[np.ndarray]:
        out, cur = [], img.astype(np.float32)
        for _ in range(levels):
            down = cv2.pyrDown(cur)
            out.append(cur - cv2.pyrUp(down, dstsize=(cur.shape[1], cur.shape[0])))
            cur = down
        out.append(cur)
        return out

    pa, pb = pyramid(ir), pyramid(vis)
    fused = (pa[-1] + pb[-1]) / 2
    for da, db in zip(reversed(pa[:-1]), reversed(pb[:-1]), strict=True):
        fused = cv2.pyrUp(fused, dstsize=(da.shape[1], da.shape[0])) + _pick_abs_max(da, db)
    return np.clip(fused, 0, 1).astype(np.float64)


def dwt(ir: np.ndarray, vis: np.ndarray, wavelet: str = "db1", levels: int = 3) -> np.ndarray:
    """DWT fusion with PyWavelets; output cropped to the input size."""
    levels = max(1, min(levels, pywt.dwt_max_level(min(ir.shape), pywt.Wavelet(wavelet).dec_len)))
    ca, cb = pywt.wavedec2(ir, wavelet, level=levels), pywt.wavedec2(vis, wavelet, level=levels)
    fused = [(ca[0] + cb[0]) / 2]
    for da, db in zip(ca[1:], cb[1:], strict=True):
        fused.append(tuple(_pick_abs_max(x, y) for x, y in zip(da, db, strict=True)))
    out = pywt.waverec2(fused, wavelet)[: ir.shape[0], : ir.shape[1]]
    return np.clip(out, 0, 1)


BASELINES: dict[str, Baseline] = {
    "ir_only": infrared_only,
    "visible_only": visible_only,
    "average": average,
    "max": max_luminance,
    "laplacian": laplacian_pyramid,
    "dwt": dwt,
}
