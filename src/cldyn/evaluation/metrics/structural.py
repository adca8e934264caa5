"""Structure and visual information fidelity: VIF, SSIM and MS-SSIM (summed over both sources)."""

from __future__ import annotations

import math

import numpy as np

from cldyn.evaluation.metrics.filters import check_gray, filter_valid, gaussian_window


def vif_pixel(ref: np.ndarray, dist: np.ndarray, sigma_nsq: float = 2.0, eps: float = 1e-10) -> float:
    """Pixel-domain VIF (VIFP) of ``dist`` against ``ref`` (Sheikh & Bovik 2006, ``vifvec``'s pixel version): 4 scales,
    Gaussian windows of 17/9/5/3 pixels with sd = N/5, 'valid' filtering, 2x down-sampling between scales, noise
    variance 2. Returns 1 for the NaN case of flat images, as the CDDFuse evaluator does. Images smaller than a
    scale's window contribute nothing at that scale (SciPy's 'valid' convolution, which the CDDFuse evaluator uses,
    would instead swap image and window there: a meaningless number for images under 17 pixels a side)."""
    ref, dist = check_gray(ref, dist)
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = gaussian_window(n, n / 5.0)
        if scale > 1:
            ref = filter_valid(ref, win)[::2, ::2]
            dist = filter_valid(dist, win)[::2, ::2]
        mu1, mu2 = filter_valid(ref, win), filter_valid(dist, win)
        s1 = filter_valid(ref * ref, win) - mu1 * mu1
        s2 = filter_valid(dist * dist, win) - mu2 * mu2
        s12 = filter_valid(ref * dist, win) - mu1 * mu2
        s1, s2 = np.maximum(s1, 0), np.maximum(s2, 0)
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        flat1, flat2 = s1 < eps, s2 < eps
        g[flat1] = 0
        sv[flat1] = s2[flat1]
        s1 = np.where(flat1, 0, s1)
        g[flat2] = 0
        sv[flat2] = 0
        neg = g < 0
        sv[neg] = s2[neg]
        g[neg] = 0
        sv[sv <= eps] = eps
        num += float(np.sum(np.log10(1 + g * g * s1 / (sv + sigma_nsq))))
        den += float(np.sum(np.log10(1 + s1 / sigma_nsq)))
    value = num / den if den != 0 else float("nan")
    return 1.0 if math.isnan(value) else value


def vif(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIF = VIFP(A -> F) + VIFP(B -> F), as summed by the CDDFuse evaluator (higher is better)."""
    f, a, b = check_gray(fused, a, b)
    return vif_pixel(a, f) + vif_pixel(b, f)


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 255.0, win_size: int = 7, k1: float = 0.01,
         k2: float = 0.03) -> float:
    """Mean SSIM (Wang et al. 2004) with a ``win_size`` uniform window and sample covariances, averaged over the
    pixels whose window lies inside the image: scikit-image's ``structural_similarity`` defaults."""
    x, y = check_gray(x, y)
    if min(x.shape) < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size}, got {x.shape}")
    win = np.full((win_size, win_size), 1.0 / win_size**2)
    n = win_size**2
    cov_norm = n / (n - 1)
    ux, uy = filter_valid(x, win), filter_valid(y, win)
    vx = cov_norm * (filter_valid(x * x, win) - ux * ux)
    vy = cov_norm * (filter_valid(y * y, win) - uy * uy)
    vxy = cov_norm * (filter_valid(x * y, win) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def ssim_sum(fused: np.ndarray, a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM(F, A) + SSIM(F, B) (higher is better; 2 for F = A = B). The CDDFuse evaluator calls scikit-image 0.19 on
    float input, whose data range is then 2 (the float dtype's [-1, 1]): pass ``data_range=2`` to reproduce it."""
    f, a, b = check_gray(fused, a, b)
    return ssim(f, a, data_range) + ssim(f, b, data_range)


def ms_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003; their ``msssim.m``): 5 scales, 11x11 Gaussian window
    (sd 1.5), weights 0.0448/0.2856/0.3001/0.2363/0.1333, 2x2 mean down-sampling with symmetric borders. NaN when
    the image is too small for 5 scales (< 176 px a side) or a contrast term is negative."""
    x, y = check_gray(x, y)
    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    win = gaussian_window(11, 1.5)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mcs, mssim = [], 0.0
    for level in range(5):
        if min(x.shape) < 11:
            return float("nan")
        ux, uy = filter_valid(x, win), filter_valid(y, win)
        vx = filter_valid(x * x, win) - ux * ux
        vy = filter_valid(y * y, win) - uy * uy
        vxy = filter_valid(x * y, win) - ux * uy
        cs = (2 * vxy + c2) / (vx + vy + c2)
        mcs.append(float(cs.mean()))
        if level == 4:
            mssim = float((((2 * ux * uy + c1) / (ux * ux + uy * uy + c1)) * cs).mean())
            break
        x, y = (np.pad(v, ((0, 1), (0, 1)), mode="symmetric") for v in (x, y))
        x = (x[:-1:2, :-1:2] + x[1::2, :-1:2] + x[:-1:2, 1::2] + x[1::2, 1::2]) / 4
        y = (y[:-1:2, :-1:2] + y[1::2, :-1:2] + y[:-1:2, 1::2] + y[1::2, 1::2]) / 4
    if min(mcs[:4]) < 0 or mssim < 0:
        return float("nan")
    return float(np.prod([m**w for m, w in zip(mcs[:4], weights[:4], strict=True)]) * mssim ** weights[4])


def ms_ssim_sum(fused: np.ndarray, a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """MS-SSIM(F, A) + MS-SSIM(F, B), summed like SSIM (higher is better; 2 for F = A = B)."""
    f, a, b = check_gray(fused, a, b)
    return ms_ssim(f, a, data_range) + ms_ssim(f, b, data_range)
