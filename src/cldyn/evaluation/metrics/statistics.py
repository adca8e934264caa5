"""Single-image statistics: entropy (EN), standard deviation (SD), spatial frequency (SF), average gradient (AG)."""

from __future__ import annotations

import math

import numpy as np

from cldyn.evaluation.metrics.filters import check_gray


def entropy(img: np.ndarray) -> float:
    """EN: Shannon entropy (bits) of the 256-bin histogram of the image rounded to 8 bits (higher is better).

    ``EN = -sum_l p_l log2 p_l``. Example: a half-black, half-white image has EN = 1.
    """
    (img,) = check_gray(img)
    levels = np.clip(np.round(img), 0, 255).astype(np.int64).ravel()
    p = np.bincount(levels, minlength=256) / levels.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def standard_deviation(img: np.ndarray) -> float:
    """SD: population standard deviation of the intensities (higher is better)."""
    (img,) = check_gray(img)
    return float(img.std())


def spatial_frequency(img: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2), RF/CF the RMS of horizontal/vertical first differences (Eskicioglu & Fisher 1995;
    higher is better). A ramp rising by 1 per column has SF = 1."""
    (img,) = check_gray(img)
    rf2 = np.mean((img[:, 1:] - img[:, :-1]) ** 2)
    cf2 = np.mean((img[1:, :] - img[:-1, :]) ** 2)
    return float(math.sqrt(rf2 + cf2))


def average_gradient(img: np.ndarray) -> float:
    """AG: mean of sqrt((Gx^2 + Gy^2) / 2), central differences inside and one-sided differences at the borders
    (as ``numpy.gradient``; the CDDFuse evaluator's definition). Higher is better."""
    (img,) = check_gray(img)
    gy, gx = np.gradient(img)
    return float(np.mean(np.sqrt((gx**2 + gy**2) / 2)))
