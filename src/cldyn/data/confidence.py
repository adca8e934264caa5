"""How far to trust a registration of an infrared-visible pair: the sharpness of the gradient fields' agreement at
the found warp against every shift of it (:func:`registration_confidence`), on the images or on their local
contrast (:func:`local_contrast`). :mod:`cldyn.data.align` decides with them."""

from __future__ import annotations

import cv2
import numpy as np

from cldyn.data.registration import blurred_level, peak_sharpness, shift_surface


def registered_canvas(ir: np.ndarray, vis: np.ndarray, warp: np.ndarray, f: float, blur: float, reach: float = 0.1
                      ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """``(ir_l, canvas, (py, px))``: the infrared image at ``f`` of its size, and the visible image resampled by
    ``warp`` (infrared -> visible pixels) into that frame with ``(py, px)`` pixels (``reach`` of it) more on each
    side."""
    ir_l, m_ir = blurred_level(ir, f, blur)
    vis_l, m_vis = blurred_level(vis, f / float(np.sqrt(abs(np.linalg.det(warp[:2, :2])))), blur)
    h, w = ir_l.shape
    py, px = max(2, round(reach * h)), max(2, round(reach * w))
    to_vis = m_vis @ warp @ np.linalg.inv(m_ir) @ np.array([[1, 0, -px], [0, 1, -py], [0, 0, 1]], np.float64)
    canvas = cv2.warpPerspective(vis_l, to_vis, (w + 2 * px, h + 2 * py), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REPLICATE)
    return ir_l, canvas, (py, px)


def registration_confidence(ir: np.ndarray, vis: np.ndarray, warp: np.ndarray, f: float, blur: float,
                            reach: float = 0.1) -> float:
    """How sharply the pair's edges meet at ``warp`` and nowhere near it: the visible image is resampled into the
    infrared frame (:func:`registered_canvas`), the gradient fields' agreement is computed at every shift, and the
    peak at no shift is measured against the rest in standard deviations
    (:func:`cldyn.data.registration.peak_sharpness`). Unrelated images agree about as well at every shift."""
    ir_l, canvas, pad = registered_canvas(ir, vis, warp, f, blur, reach)
    return peak_sharpness(shift_surface(ir_l, canvas, pad), max(1, round(0.02 * max(ir_l.shape))))


def local_contrast(img: np.ndarray, sigma: float) -> np.ndarray:
    """Local z-score of ``img`` ``(H, W)`` over a Gaussian window of ``sigma`` pixels:
    ``(I - G * I) / (sqrt(G * (I - G * I)^2) + 0.02 std(I))``, so that an edge counts by its contrast with its
    surroundings rather than by its step in grey levels.

    >>> img = np.zeros((32, 32), np.float32); img[:, 16:] = 0.1  # a faint step...
    >>> faint = local_contrast(img, 4.0)
    >>> strong = local_contrast(10 * img, 4.0)  # ...weighs as a strong one
    >>> round(float(faint[0, 16]), 2), round(float(strong[0, 16]), 2), faint.shape
    (1.52, 1.52, (32, 32))
    """
    img = np.asarray(img, np.float32)
    mean = cv2.GaussianBlur(img, (0, 0), sigma)
    d = img - mean
    sd = np.sqrt(cv2.GaussianBlur(d * d, (0, 0), sigma))
    return d / (sd + 0.02 * float(img.std()) + 1e-4)


def pair_local_contrast(ir: np.ndarray, vis: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Both images of a pair as their :func:`local_contrast`, the window ``sigma`` pixels of a 640-pixel infrared
    frame (scaled to the infrared image's size, and for the visible image by the ratio of the two sizes too), so
    that the window covers the same part of the scene in both."""
    sigma_ir = sigma * max(ir.shape) / 640
    return local_contrast(ir, sigma_ir), local_contrast(vis, sigma_ir * float(np.sqrt(vis.size / ir.size)))


__all__ = ["local_contrast", "pair_local_contrast", "registered_canvas", "registration_confidence"]
