"""Information and correlation against the sources: MI, FMI (pixel), CC, SCD, PSNR."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cldyn.evaluation.metrics.filters import check_gray


def _mutual_information(x: np.ndarray, y: np.ndarray, base: float) -> float:
    """MI of the joint histogram of two integer-valued images (each distinct value a bin)."""
    xv, xi = np.unique(x.ravel(), return_inverse=True)
    yv, yi = np.unique(y.ravel(), return_inverse=True)
    joint = np.bincount(xi * len(yv) + yi, minlength=len(xv) * len(yv)).reshape(len(xv), len(yv))
    pxy = joint / joint.sum()
    px, py = pxy.sum(1, keepdims=True), pxy.sum(0, keepdims=True)
    nz = pxy > 0
    return float((pxy[nz] * np.log(pxy[nz] / (px @ py)[nz])).sum() / math.log(base))


def mutual_information(fused: np.ndarray, a: np.ndarray, b: np.ndarray, base: float = math.e) -> float:
    """MI = MI(F, A) + MI(F, B) from joint histograms of the (integer) intensities (Qu et al. 2002; higher is better).

    ``base``: ``e`` gives nats, as the CDDFuse evaluator (``sklearn.metrics.mutual_info_score``) reports; ``2``
    gives bits, as most MATLAB evaluators (VIFB) do. Values are rounded to integers first.
    """
    f, a, b = (np.round(x) for x in check_gray(fused, a, b))
    return _mutual_information(f, a, base) + _mutual_information(f, b, base)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    xd, yd = x - x.mean(), y - y.mean()
    den = math.sqrt(float((xd**2).sum() * (yd**2).sum()))
    return float((xd * yd).sum() / den) if den > 0 else float("nan")


def correlation_coefficient(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """CC = (r(A, F) + r(B, F)) / 2, Pearson correlations (higher is better). NaN when an image is constant."""
    f, a, b = check_gray(fused, a, b)
    return (_corr(a, f) + _corr(b, f)) / 2


def scd(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SCD = r(F - B, A) + r(F - A, B), the sum of the correlations of differences (Aslantas & Bendes 2015; higher
    is better). NaN when a difference image is constant."""
    f, a, b = check_gray(fused, a, b)
    return _corr(a, f - b) + _corr(b, f - a)


def psnr(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """PSNR = 10 log10(max(F)^2 / MSE), MSE the mean of MSE(A, F) and MSE(B, F) (the CDDFuse evaluator's definition,
    peak = the fused image's maximum; higher is better)."""
    f, a, b = check_gray(fused, a, b)
    mse = (np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2
    return float(10 * math.log10(f.max() ** 2 / mse)) if mse > 0 else float("inf")


def _fmi_pair(src: np.ndarray, fus: np.ndarray, fus_normalized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fast-FMI of one source against the fused image for every window: rows of ``(N, l)`` window values in
    MATLAB's column-major order. Returns (per-window FMI, whether the raw windows were equal)."""
    equal = np.all(src == fus, axis=1)

    def normalize(w: np.ndarray) -> np.ndarray:
        lo, hi = w.min(1, keepdims=True), w.max(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(hi == lo, 1.0, (w - lo) / (hi - lo))

    a, f = normalize(src), fus_normalized
    n_values = a.shape[1]
    ap, fp = a / a.sum(1, keepdims=True), f / f.sum(1, keepdims=True)
    ac, fc = np.cumsum(ap, 1), np.cumsum(fp, 1)
    at, ft = ap - ap.mean(1, keepdims=True), fp - fp.mean(1, keepdims=True)
    num = (at * ft).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(num == 0, 0.0, num / np.sqrt((at * at).sum(1) * (ft * ft).sum(1)))
    i = np.arange(1, n_values + 1, dtype=np.float64)
    a_sd = np.sqrt(np.maximum((i * i * ap).sum(1) - (i * ap).sum(1) ** 2, 0))
    f_sd = np.sqrt(np.maximum((i * i * fp).sum(1) - (i * fp).sum(1) ** 2, 0))
    fi, aj = fc[:, :, None], ac[:, None, :]  # (N, l, 1), (N, 1, l): index i over f, j over a
    # Frechet bound copula of the two CDFs: the upper bound min(F, A) where the windows correlate positively, the
    # lower bound max(F + A - 1, 0) where negatively (each window needs only one of them).
    bound = np.minimum(fi, aj)
    neg = np.flatnonzero(c < 0)  # usually few windows: recompute only those
    if neg.size:
        bound[neg] = np.maximum(fi[neg] + aj[neg] - 1, 0)
    # Covariance of the bound: sum(bound) - sum_i F_i * sum_j A_j (the independent part, without forming it).
    cov = bound.sum((1, 2)) - fc.sum(1) * ac.sum(1)
    sd_ok = (a_sd > 0) & (f_sd > 0) & (c != 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mix = np.where(sd_ok, c / (cov / (f_sd * a_sd)), 0.0)[:, None, None]
    # Probability mass of each cell: second difference of the bound, with zero before the first index.
    padded = np.pad(bound, ((0, 0), (1, 0), (1, 0)))
    cell = padded[:, 1:, 1:] - padded[:, :-1, 1:] - padded[:, 1:, :-1] + padded[:, :-1, :-1]
    jpdf = mix * cell + (1 - mix) * fp[:, :, None] * ap[:, None, :]
    def plogp(p: np.ndarray, axes) -> np.ndarray:
        # MATLAB's real(-p log2 p) over the non-zero entries: for p < 0 the real part is -p log2 |p|
        logs = np.log2(np.abs(p), out=np.zeros_like(p), where=p != 0)
        return -(p * logs).sum(axes)

    joint, ha, hf = plogp(jpdf, (1, 2)), plogp(ap, 1), plogp(fp, 1)
    mi = ha + hf - joint
    with np.errstate(invalid="ignore", divide="ignore"):
        fmi = np.where(mi == 0, 0.0, 2 * mi / (ha + hf))
    return np.where(equal, 1.0, fmi), equal


def fmi_pixel(fused: np.ndarray, a: np.ndarray, b: np.ndarray, window: int = 3, chunk: int = 4096) -> float:
    """FMI on raw pixels (feature 'none'), Haghighat & Razian's Fast-FMI (2014) with ``window`` x ``window`` sliding
    windows: per window, the normalised mutual information of the source's and the fused window's intensity
    distributions, the joint distribution built from Frechet bounds scaled by their correlation; the mean over
    windows of the average for both sources (higher is better, 1 for F = A = B). Follows ``fmi.m`` to the letter,
    including its reuse of the normalised fused window in the second source's equality test."""
    f, a, b = check_gray(fused, a, b)
    if min(f.shape) < window:
        return float("nan")

    def windows(x: np.ndarray) -> np.ndarray:
        # (rows, cols, w, w) -> MATLAB column-major flattening of each window
        return sliding_window_view(x, (window, window)).transpose(0, 1, 3, 2).reshape(-1, window * window)

    wa, wb, wf = windows(a), windows(b), windows(f)
    total, count = 0.0, 0
    for start in range(0, wf.shape[0], chunk):
        sl = slice(start, start + chunk)
        fa, fb, ff = wa[sl], wb[sl], wf[sl]
        lo, hi = ff.min(1, keepdims=True), ff.max(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            f_norm = np.where(hi == lo, 1.0, (ff - lo) / (hi - lo))
        q_af, eq_a = _fmi_pair(fa, ff, f_norm)
        # fmi.m compares the second source with the fused window as the first branch left it: normalised
        # unless the first source's window equalled it.
        f_seen = np.where(eq_a[:, None], ff, f_norm)
        q_bf, _ = _fmi_pair(fb, f_seen, f_norm)
        total += float(((q_af + q_bf) / 2).sum())
        count += len(ff)
    return total / count
