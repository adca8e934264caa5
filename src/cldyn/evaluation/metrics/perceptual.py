"""Human-perception-based measures: Qcv (Chen-Varshney), Qcb (Chen-Blum) and Cvejic's Qc."""

from __future__ import annotations

import math

import numpy as np

from cldyn.evaluation.metrics.filters import (
    check_gray,
    filter_same_complex,
    filter_same_zero,
    filter_valid,
    gaussian_window,
)


def q_cvejic(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Q_C of Cvejic et al. (2005, as in Z. Liu's ``metricCvejic.m``): local SSIM maps (7x7 Gaussian, sd 1.5,
    constants 2e-16) of F with A and with B, mixed by ``s = sigma_AF / (sigma_AF + sigma_BF)``; where s < 0 the
    local value is 0, where s > 1 it is 1; NaN values dropped; the mean. Higher is better."""
    f, a, b = check_gray(fused, a, b)
    if min(f.shape) < 11:
        return float("nan")
    win = gaussian_window(7, 1.5)
    c = 2e-16

    def ssim_map(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ux, uy = filter_valid(x, win), filter_valid(y, win)
        vx = filter_valid(x * x, win) - ux * ux
        vy = filter_valid(y * y, win) - uy * uy
        vxy = filter_valid(x * y, win) - ux * uy
        with np.errstate(divide="ignore", invalid="ignore"):
            return ((2 * ux * uy + c) * (2 * vxy + c)) / ((ux * ux + uy * uy + c) * (vx + vy + c)), vxy

    map_a, s_af = ssim_map(a, f)
    map_b, s_bf = ssim_map(b, f)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = s_af / (s_af + s_bf)
        sim = s * map_a + (1 - s) * map_b
    sim = np.where(s < 0, 0.0, np.where(s > 1, 1.0, sim))
    sim = sim[~np.isnan(sim)]
    return float(sim.mean()) if sim.size else float("nan")


def _normalize_255(x: np.ndarray) -> np.ndarray:
    """Z. Liu's ``normalize1``: stretch to 0..255 and round (all-zero images stay as they are)."""
    lo, hi = float(x.min()), float(x.max())
    if hi == 0 and lo == 0:
        return x
    if hi == lo:
        return np.full_like(x, np.nan)  # MATLAB divides 0 by 0 here
    return np.round((x - lo) / (hi - lo) * 255)


def _freq_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's ``freqspace([h, w], 'meshgrid')``: (u across columns, v across rows), in [-1, 1)."""
    fu = (np.arange(w) - w // 2) * (2 / w)
    fv = (np.arange(h) - h // 2) * (2 / h)
    return np.meshgrid(fu, fv)


def _freq_filter(x: np.ndarray, response: np.ndarray) -> np.ndarray:
    """``ifft2(ifftshift(fftshift(fft2(x)) .* response))`` (complex, as in the MATLAB reference)."""
    return np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(x)) * response))


def q_chen_blum(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qcb of Chen & Blum (Image Vis. Comput. 2009), as Z. Liu's ``metricChenBlum.m`` used by VIFB: images stretched
    to 0..255, contrast-sensitivity filtering in the frequency domain (DoG with f0 15.3870, f1 1.3456, a 0.7622 on a
    grid scaled by size/30), local contrast from 31x31 Gaussians (sd 2 and 4), masked contrast C^3 / (C^2 + 1e-4),
    contrast preservation weighted by saliency. Higher is better; NaN where the reference divides 0 by 0."""
    f, a, b = (_normalize_255(x) for x in check_gray(fused, a, b))
    h, w = f.shape
    u, v = _freq_grid(h, w)
    r = np.sqrt((u * w / 30) ** 2 + (v * h / 30) ** 2)
    sd = np.exp(-((r / 15.3870) ** 2)) - 0.7622 * np.exp(-((r / 1.3456) ** 2))
    yy, xx = np.mgrid[-15:16, -15:16]

    def gauss(sigma: float) -> np.ndarray:
        return np.exp(-(xx * xx + yy * yy) / (2 * sigma * sigma)) / (2 * math.pi * sigma * sigma)

    g1, g2 = gauss(2.0), gauss(4.0)

    def masked_contrast(img: np.ndarray) -> np.ndarray:
        filtered = _freq_filter(img, sd)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.abs(filter_same_complex(filtered, g1) / filter_same_complex(filtered, g2) - 1)
            return c**3 / (c**2 + 1e-4)

    ca, cb, cf = masked_contrast(a), masked_contrast(b), masked_contrast(f)
    with np.errstate(divide="ignore", invalid="ignore"):
        qaf = np.where(ca < cf, ca / cf, cf / ca)
        qbf = np.where(cb < cf, cb / cf, cf / cb)
        la = ca * ca / (ca * ca + cb * cb)
        lb = cb * cb / (ca * ca + cb * cb)
    return float(np.mean(la * qaf + lb * qbf))


def q_chen_varshney(fused: np.ndarray, a: np.ndarray, b: np.ndarray, window: int = 16, alpha: float = 5.0) -> float:
    """Qcv of Chen & Varshney (Inf. Fusion 2007), as Z. Liu's ``metricChen.m`` used by VIFB: images stretched to
    0..255; region saliency = sum of Sobel magnitude^alpha per 16x16 block; the source-fused differences filtered by
    the Mannos-Sakrison CSF (grid scaled by size/8) and their mean square per block, weighted by saliency. Lower is
    better. The reference's frequency filtering leaves a tiny imaginary part; the real part is returned."""
    f, a, b = (_normalize_255(x) for x in check_gray(fused, a, b))
    h, w = f.shape
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)

    def grad(x: np.ndarray) -> np.ndarray:
        # filter2 is a correlation: flip before filter_same_zero, which convolves
        gx = filter_same_zero(x, kx[::-1, ::-1])
        gy = filter_same_zero(x, kx.T[::-1, ::-1])
        return np.sqrt(gx * gx + gy * gy)

    def blocks(x: np.ndarray, fn) -> np.ndarray:
        ph, pw = -h % window, -w % window  # blkproc pads partial blocks with zeros
        x = np.pad(x, ((0, ph), (0, pw)))
        hb, wb = x.shape[0] // window, x.shape[1] // window
        return fn(x.reshape(hb, window, wb, window))

    lam_a = blocks(grad(a) ** alpha, lambda t: t.sum(axis=(1, 3)))
    lam_b = blocks(grad(b) ** alpha, lambda t: t.sum(axis=(1, 3)))
    u, v = _freq_grid(h, w)
    r = np.sqrt((u * w / 8) ** 2 + (v * h / 8) ** 2)
    csf = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    da = blocks(_freq_filter(a - f, csf) ** 2, lambda t: t.mean(axis=(1, 3)))
    db = blocks(_freq_filter(b - f, csf) ** 2, lambda t: t.mean(axis=(1, 3)))
    den = float(np.sum(lam_a + lam_b))
    if den == 0:
        return float("nan")
    return float(np.real(np.sum(lam_a * da + lam_b * db)) / den)
