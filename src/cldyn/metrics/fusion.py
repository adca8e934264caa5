"""No-reference fusion-quality metrics, written from their published definitions.

Every function takes float arrays ``(H, W)`` on the 0..255 scale (as fusion evaluators read 8-bit images) and returns
a Python float. Two-source metrics take ``(fused, a, b)`` with ``a`` the infrared and ``b`` the visible image. The
reference for each is named in its docstring; where the public CDDFuse evaluator (``utils/Evaluator.py`` of
MMIF-CDDFuse, the most copied in the field) deviates from the paper's definition, both are available and the
``variant`` argument says which is computed. Direction: ``higher`` or ``lower`` is better, in :data:`DIRECTION`.

Filtering runs in float64 with OpenCV (no per-pixel Python loops); results agree with SciPy/scikit-image based
implementations to about 1e-10 relative.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

DIRECTION: dict[str, str] = {
    "en": "higher", "sd": "higher", "sf": "higher", "ag": "higher", "mi": "higher", "fmi": "higher",
    "scd": "higher", "vif": "higher", "qabf": "higher", "nabf": "lower", "ssim": "higher", "ms_ssim": "higher",
    "cc": "higher", "psnr": "higher", "qcb": "higher", "qcv": "lower", "qc": "higher",
}


def _check(*images: np.ndarray) -> list[np.ndarray]:
    out = []
    for img in images:
        arr = np.asarray(img, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"metrics take 2-D gray images, got shape {arr.shape}")
        out.append(arr)
    if any(a.shape != out[0].shape for a in out):
        raise ValueError(f"image sizes differ: {[a.shape for a in out]}")
    return out


def _filter_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation, 'valid' region (equals convolution for the symmetric kernels used here). OpenCV in float64;
    the valid region does not depend on the border rule."""
    kh, kw = kernel.shape
    out_h, out_w = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    if out_h <= 0 or out_w <= 0:  # image smaller than the window: an empty result, as SciPy's 'valid' gives
        return np.zeros((max(out_h, 0), max(out_w, 0)))
    full = cv2.filter2D(x, cv2.CV_64F, kernel, borderType=cv2.BORDER_CONSTANT)
    return full[kh // 2: x.shape[0] - (kh - 1 - kh // 2), kw // 2: x.shape[1] - (kw - 1 - kw // 2)]


def _filter_same_zero(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D *convolution* (kernel flipped), zero padding, 'same' size: ``scipy.signal.convolve2d(x, k, 'same')``."""
    k = np.ascontiguousarray(kernel[::-1, ::-1])
    return cv2.filter2D(x, cv2.CV_64F, k, borderType=cv2.BORDER_CONSTANT)


# --- single-image metrics ------------------------------------------------------------------------------------


def entropy(img: np.ndarray) -> float:
    """EN: Shannon entropy (bits) of the 256-bin histogram of the image rounded to 8 bits (higher is better).

    ``EN = -sum_l p_l log2 p_l``. Example: a half-black, half-white image has EN = 1.
    """
    (img,) = _check(img)
    levels = np.clip(np.round(img), 0, 255).astype(np.int64).ravel()
    p = np.bincount(levels, minlength=256) / levels.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def standard_deviation(img: np.ndarray) -> float:
    """SD: population standard deviation of the intensities (higher is better)."""
    (img,) = _check(img)
    return float(img.std())


def spatial_frequency(img: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2), RF/CF the RMS of horizontal/vertical first differences (Eskicioglu & Fisher 1995;
    higher is better). A ramp rising by 1 per column has SF = 1."""
    (img,) = _check(img)
    rf2 = np.mean((img[:, 1:] - img[:, :-1]) ** 2)
    cf2 = np.mean((img[1:, :] - img[:-1, :]) ** 2)
    return float(math.sqrt(rf2 + cf2))


def average_gradient(img: np.ndarray) -> float:
    """AG: mean of sqrt((Gx^2 + Gy^2) / 2), central differences inside and one-sided differences at the borders
    (as ``numpy.gradient``; the CDDFuse evaluator's definition). Higher is better."""
    (img,) = _check(img)
    gy, gx = np.gradient(img)
    return float(np.mean(np.sqrt((gx**2 + gy**2) / 2)))


# --- two-source metrics --------------------------------------------------------------------------------------


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
    f, a, b = (np.round(x) for x in _check(fused, a, b))
    return _mutual_information(f, a, base) + _mutual_information(f, b, base)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    xd, yd = x - x.mean(), y - y.mean()
    den = math.sqrt(float((xd**2).sum() * (yd**2).sum()))
    return float((xd * yd).sum() / den) if den > 0 else float("nan")


def correlation_coefficient(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """CC = (r(A, F) + r(B, F)) / 2, Pearson correlations (higher is better). NaN when an image is constant."""
    f, a, b = _check(fused, a, b)
    return (_corr(a, f) + _corr(b, f)) / 2


def scd(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SCD = r(F - B, A) + r(F - A, B), the sum of the correlations of differences (Aslantas & Bendes 2015; higher
    is better). NaN when a difference image is constant."""
    f, a, b = _check(fused, a, b)
    return _corr(a, f - b) + _corr(b, f - a)


def psnr(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """PSNR = 10 log10(max(F)^2 / MSE), MSE the mean of MSE(A, F) and MSE(B, F) (the CDDFuse evaluator's definition,
    peak = the fused image's maximum; higher is better)."""
    f, a, b = _check(fused, a, b)
    mse = (np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2
    return float(10 * math.log10(f.max() ** 2 / mse)) if mse > 0 else float("inf")


def _gaussian_window(n: int, sd: float) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', n, sd)``."""
    m = (n - 1) / 2
    y, x = np.ogrid[-m:m + 1, -m:m + 1]
    h = np.exp(-(x * x + y * y) / (2 * sd * sd))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h / h.sum()


def vif_pixel(ref: np.ndarray, dist: np.ndarray, sigma_nsq: float = 2.0, eps: float = 1e-10) -> float:
    """Pixel-domain VIF (VIFP) of ``dist`` against ``ref`` (Sheikh & Bovik 2006, ``vifvec``'s pixel version): 4 scales,
    Gaussian windows of 17/9/5/3 pixels with sd = N/5, 'valid' filtering, 2x down-sampling between scales, noise
    variance 2. Returns 1 for the NaN case of flat images, as the CDDFuse evaluator does. Images smaller than a
    scale's window contribute nothing at that scale (SciPy's 'valid' convolution, which the CDDFuse evaluator uses,
    would instead swap image and window there: a meaningless number for images under 17 pixels a side)."""
    ref, dist = _check(ref, dist)
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = _gaussian_window(n, n / 5.0)
        if scale > 1:
            ref = _filter_valid(ref, win)[::2, ::2]
            dist = _filter_valid(dist, win)[::2, ::2]
        mu1, mu2 = _filter_valid(ref, win), _filter_valid(dist, win)
        s1 = _filter_valid(ref * ref, win) - mu1 * mu1
        s2 = _filter_valid(dist * dist, win) - mu2 * mu2
        s12 = _filter_valid(ref * dist, win) - mu1 * mu2
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
    f, a, b = _check(fused, a, b)
    return vif_pixel(a, f) + vif_pixel(b, f)


# Xydeas & Petrovic (2000) constants.
_QABF = {"tg": 0.9994, "kg": -15.0, "dg": 0.5, "ta": 0.9879, "ka": -22.0, "da": 0.8}
_SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)


def _edge_strength_orientation(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sx = _filter_same_zero(img, _SOBEL_X)
    sy = _filter_same_zero(img, _SOBEL_Y)
    g = np.sqrt(sx * sx + sy * sy)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(sx == 0, math.pi / 2, np.arctan(sy / np.where(sx == 0, 1, sx)))
    return g, alpha


def _edge_preservation(ga, aa, gf, af, variant: str) -> np.ndarray:
    c = _QABF
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ga > gf, gf / ga, ga / gf)
    # Where gA == gF the CDDFuse evaluator sets G = gF (0 on flat pixels, gF elsewhere); the definition gives 1
    # (the edge is fully preserved), and 0 on flat pixels.
    equal_value = gf if variant == "cddfuse" else np.where(gf == 0, 0.0, 1.0)
    ratio = np.where(ga == gf, equal_value, ratio)
    orient = 1 - np.abs(aa - af) / (math.pi / 2)
    qg = c["tg"] / (1 + np.exp(c["kg"] * (ratio - c["dg"])))
    qa = c["ta"] / (1 + np.exp(c["ka"] * (orient - c["da"])))
    return qg * qa


def qabf(fused: np.ndarray, a: np.ndarray, b: np.ndarray, variant: str = "cddfuse") -> float:
    """Qabf, the gradient-based fusion performance of Xydeas & Petrovic (2000), weights w = g (L = 1) and constants
    Tg 0.9994, kg -15, Dg 0.5, Ta 0.9879, ka -22, Da 0.8 (higher is better; at most ~0.975 with these constants).

    Sobel edges with zero padding; orientation ``arctan(Sy / Sx)`` (pi/2 where Sx = 0). ``variant="cddfuse"``
    keeps the CDDFuse evaluator's handling of pixels where the source and fused edge strengths are equal (G = gF
    there instead of 1); ``"standard"`` uses G = 1 (0 on flat pixels).
    """
    if variant not in ("cddfuse", "standard"):
        raise ValueError(f"qabf variant must be 'cddfuse' or 'standard', got {variant!r}")
    f, a, b = _check(fused, a, b)
    ga, aa = _edge_strength_orientation(a)
    gb, ab = _edge_strength_orientation(b)
    gf, af = _edge_strength_orientation(f)
    qaf = _edge_preservation(ga, aa, gf, af, variant)
    qbf = _edge_preservation(gb, ab, gf, af, variant)
    den = float(np.sum(ga + gb))
    return float(np.sum(qaf * ga + qbf * gb) / den) if den > 0 else float("nan")


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 255.0, win_size: int = 7, k1: float = 0.01,
         k2: float = 0.03) -> float:
    """Mean SSIM (Wang et al. 2004) with a ``win_size`` uniform window and sample covariances, averaged over the
    pixels whose window lies inside the image: scikit-image's ``structural_similarity`` defaults."""
    x, y = _check(x, y)
    if min(x.shape) < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size}, got {x.shape}")
    win = np.full((win_size, win_size), 1.0 / win_size**2)
    n = win_size**2
    cov_norm = n / (n - 1)
    ux, uy = _filter_valid(x, win), _filter_valid(y, win)
    vx = cov_norm * (_filter_valid(x * x, win) - ux * ux)
    vy = cov_norm * (_filter_valid(y * y, win) - uy * uy)
    vxy = cov_norm * (_filter_valid(x * y, win) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def ssim_sum(fused: np.ndarray, a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM(F, A) + SSIM(F, B) (higher is better; 2 for F = A = B). The CDDFuse evaluator calls scikit-image 0.19 on
    float input, whose data range is then 2 (the float dtype's [-1, 1]): pass ``data_range=2`` to reproduce it."""
    f, a, b = _check(fused, a, b)
    return ssim(f, a, data_range) + ssim(f, b, data_range)


def ms_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003; their ``msssim.m``): 5 scales, 11x11 Gaussian window
    (sd 1.5), weights 0.0448/0.2856/0.3001/0.2363/0.1333, 2x2 mean down-sampling with symmetric borders. NaN when
    the image is too small for 5 scales (< 176 px a side) or a contrast term is negative."""
    x, y = _check(x, y)
    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    win = _gaussian_window(11, 1.5)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mcs, mssim = [], 0.0
    for level in range(5):
        if min(x.shape) < 11:
            return float("nan")
        ux, uy = _filter_valid(x, win), _filter_valid(y, win)
        vx = _filter_valid(x * x, win) - ux * ux
        vy = _filter_valid(y * y, win) - uy * uy
        vxy = _filter_valid(x * y, win) - ux * uy
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
    f, a, b = _check(fused, a, b)
    return ms_ssim(f, a, data_range) + ms_ssim(f, b, data_range)


def nabf(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Nabf, the modified fusion-artifact measure of B. K. Shreyamsha Kumar (SIViP 2013), from Petrovic's
    objective fusion performance code: Sobel/8 edges with mirrored borders, edge preservation
    ``Q = sqrt(Qg Qa)`` with Nrg 0.9999, kg 19, sigma_g 0.5, Nra 0.9995, ka 22, sigma_a 0.5; weights g^1.5 where
    g >= 2; artifacts counted where the fused edge is stronger than both sources (lower is better, 0 = none)."""
    f, a, b = _check(fused, a, b)
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64) / 8
    ky = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64) / 8

    def edges(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gv = cv2.filter2D(x, cv2.CV_64F, kx, borderType=cv2.BORDER_REFLECT_101)
        gh = cv2.filter2D(x, cv2.CV_64F, ky, borderType=cv2.BORDER_REFLECT_101)
        with np.errstate(divide="ignore", invalid="ignore"):
            angle = np.where((gv == 0) & (gh == 0), 0.0, np.arctan(gv / gh))
        return np.sqrt(gv * gv + gh * gh), angle

    (ga, aa), (gb, ab), (gf, af) = edges(a), edges(b), edges(f)

    def preservation(gs: np.ndarray, as_: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where((gs == 0) | (gf == 0), 0.0, np.where(gs > gf, gf / gs, gs / gf))
        orient = np.abs(np.abs(as_ - af) - math.pi / 2) * 2 / math.pi
        qg = 0.9999 / (1 + np.exp(-19 * (rel - 0.5)))
        qa = 0.9995 / (1 + np.exp(-22 * (orient - 0.5)))
        return np.sqrt(qg * qa)

    qaf, qbf = preservation(ga, aa), preservation(gb, ab)
    wa, wb = np.where(ga >= 2, ga**1.5, 0.0), np.where(gb >= 2, gb**1.5, 0.0)
    total = float(np.sum(wa + wb))
    if total == 0:
        return float("nan")
    artifact = (gf > ga) & (gf > gb)
    return float(np.sum(artifact * ((1 - qaf) * wa + (1 - qbf) * wb)) / total)


def q_cvejic(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Q_C of Cvejic et al. (2005, as in Z. Liu's ``metricCvejic.m``): local SSIM maps (7x7 Gaussian, sd 1.5,
    constants 2e-16) of F with A and with B, mixed by ``s = sigma_AF / (sigma_AF + sigma_BF)``; where s < 0 the
    local value is 0, where s > 1 it is 1; NaN values dropped; the mean. Higher is better."""
    f, a, b = _check(fused, a, b)
    if min(f.shape) < 11:
        return float("nan")
    win = _gaussian_window(7, 1.5)
    c = 2e-16

    def ssim_map(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ux, uy = _filter_valid(x, win), _filter_valid(y, win)
        vx = _filter_valid(x * x, win) - ux * ux
        vy = _filter_valid(y * y, win) - uy * uy
        vxy = _filter_valid(x * y, win) - ux * uy
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


def _filter_same_complex(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return _filter_same_zero(np.ascontiguousarray(x.real), kernel) + 1j * _filter_same_zero(
        np.ascontiguousarray(x.imag), kernel)


def q_chen_blum(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qcb of Chen & Blum (Image Vis. Comput. 2009), as Z. Liu's ``metricChenBlum.m`` used by VIFB: images stretched
    to 0..255, contrast-sensitivity filtering in the frequency domain (DoG with f0 15.3870, f1 1.3456, a 0.7622 on a
    grid scaled by size/30), local contrast from 31x31 Gaussians (sd 2 and 4), masked contrast C^3 / (C^2 + 1e-4),
    contrast preservation weighted by saliency. Higher is better; NaN where the reference divides 0 by 0."""
    f, a, b = (_normalize_255(x) for x in _check(fused, a, b))
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
            c = np.abs(_filter_same_complex(filtered, g1) / _filter_same_complex(filtered, g2) - 1)
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
    f, a, b = (_normalize_255(x) for x in _check(fused, a, b))
    h, w = f.shape
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)

    def grad(x: np.ndarray) -> np.ndarray:
        # filter2 is a correlation: flip before _filter_same_zero, which convolves
        gx = _filter_same_zero(x, kx[::-1, ::-1])
        gy = _filter_same_zero(x, kx.T[::-1, ::-1])
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
    f, a, b = _check(fused, a, b)
    if min(f.shape) < window:
        return float("nan")
    from numpy.lib.stride_tricks import sliding_window_view

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
