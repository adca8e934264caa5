"""Shared helpers of the fusion metrics: input checks and float64 OpenCV filtering."""

from __future__ import annotations

import cv2
import numpy as np


def check_gray(*images: np.ndarray) -> list[np.ndarray]:
    out = []
    for img in images:
        arr = np.asarray(img, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"metrics take 2-D gray images, got shape {arr.shape}")
        out.append(arr)
    if any(a.shape != out[0].shape for a in out):
        raise ValueError(f"image sizes differ: {[a.shape for a in out]}")
    return out


def filter_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation, 'valid' region (equals convolution for the symmetric kernels used here). OpenCV in float64;
    the valid region does not depend on the border rule."""
    kh, kw = kernel.shape
    out_h, out_w = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    if out_h <= 0 or out_w <= 0:  # image smaller than the window: an empty result, as SciPy's 'valid' gives
        return np.zeros((max(out_h, 0), max(out_w, 0)))
    full = cv2.filter2D(x, cv2.CV_64F, kernel, borderType=cv2.BORDER_CONSTANT)
    return full[kh // 2: x.shape[0] - (kh - 1 - kh // 2), kw // 2: x.shape[1] - (kw - 1 - kw // 2)]


def filter_same_zero(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D *convolution* (kernel flipped), zero padding, 'same' size: ``scipy.signal.convolve2d(x, k, 'same')``."""
    k = np.ascontiguousarray(kernel[::-1, ::-1])
    return cv2.filter2D(x, cv2.CV_64F, k, borderType=cv2.BORDER_CONSTANT)


def gaussian_window(n: int, sd: float) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', n, sd)``."""
    m = (n - 1) / 2
    y, x = np.ogrid[-m:m + 1, -m:m + 1]
    h = np.exp(-(x * x + y * y) / (2 * sd * sd))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h / h.sum()


def filter_same_complex(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return filter_same_zero(np.ascontiguousarray(x.real), kernel) + 1j * filter_same_zero(
        np.ascontiguousarray(x.imag), kernel)
