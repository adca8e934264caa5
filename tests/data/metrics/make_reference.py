"""Compute the reference metric values in ``reference.json`` for the fixture pair in this folder.

Run once (``python tests/data/metrics/make_reference.py``); the test suite then compares cldyn's metrics with the
stored numbers. The references are independent re-derivations of the definitions used by the public CDDFuse
evaluator (MMIF-CDDFuse ``utils/Evaluator.py``), written here from its formulas with SciPy's ``convolve2d``,
scikit-image's ``structural_similarity`` (data range 2, as scikit-image 0.19 used for float input) and
scikit-learn's ``mutual_info_score`` (natural log) rather than cldyn's torch code, so a plumbing error in either
shows up as a mismatch.

The metrics defined by the MATLAB code used by VIFB (Z. Liu's ``metricChenBlum.m`` / ``metricChen.m`` /
``metricCvejic.m``), Shreyamsha Kumar's Nabf and Wang's ``msssim.m`` are re-derived the same way, with SciPy's
``correlate2d``/``convolve2d`` (MATLAB's ``filter2``/``conv2``) and NumPy's FFT.

Inputs (all 256x192, 8-bit, a crop of MSRS 00004N at rows 150-341, cols 200-455): ``ir.png`` (infrared),
``vis_gray.png`` (the visible image made gray the CDDFuse way:
OpenCV BGR->GRAY on float32, rounded), ``fused.png`` (the shipped VFN's fused luminance of the same pair).
"""

import json
import math
from pathlib import Path

import cv2
import numpy as np
from scipy.signal import convolve2d, correlate2d
from skimage.metrics import structural_similarity
from sklearn.metrics import mutual_info_score

HERE = Path(__file__).parent


def read(name):
    return cv2.imread(str(HERE / name), cv2.IMREAD_GRAYSCALE).astype(np.float64)


def en(x):
    h = np.bincount(np.uint8(np.round(x)).ravel(), minlength=256) / x.size
    h = h[h > 0]
    return -np.sum(h * np.log2(h))


def ag(x):
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    gx[:, 0], gx[:, -1], gx[:, 1:-1] = x[:, 1] - x[:, 0], x[:, -1] - x[:, -2], (x[:, 2:] - x[:, :-2]) / 2
    gy[0], gy[-1], gy[1:-1] = x[1] - x[0], x[-1] - x[-2], (x[2:] - x[:-2]) / 2
    return np.mean(np.sqrt((gx**2 + gy**2) / 2))


def corr(x, y):
    xd, yd = x - x.mean(), y - y.mean()
    return np.sum(xd * yd) / np.sqrt(np.sum(xd**2) * np.sum(yd**2))


def vifp(ref, dist):
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        sd = n / 5
        m = (n - 1) / 2
        yy, xx = np.ogrid[-m:m + 1, -m:m + 1]
        win = np.exp(-(xx**2 + yy**2) / (2 * sd * sd))
        win[win < np.finfo(float).eps * win.max()] = 0
        win /= win.sum()
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, mode="valid"), convolve2d(dist, win, mode="valid")
        s1 = np.maximum(convolve2d(ref * ref, win, mode="valid") - mu1**2, 0)
        s2 = np.maximum(convolve2d(dist * dist, win, mode="valid") - mu2**2, 0)
        s12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        g[s1 < 1e-10], sv[s1 < 1e-10] = 0, s2[s1 < 1e-10]
        s1[s1 < 1e-10] = 0
        g[s2 < 1e-10], sv[s2 < 1e-10] = 0, 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= 1e-10] = 1e-10
        num += np.sum(np.log10(1 + g * g * s1 / (sv + 2)))
        den += np.sum(np.log10(1 + s1 / 2))
    return num / den


def qabf(f, a, b):
    def edges(x):
        sx = convolve2d(x, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float), mode="same")
        sy = convolve2d(x, np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float), mode="same")
        ang = np.full_like(x, math.pi / 2)
        ang[sx != 0] = np.arctan(sy[sx != 0] / sx[sx != 0])
        return np.hypot(sx, sy), ang

    def q(gs, as_, gf, af):
        rel = np.zeros_like(gs)
        up, eq, lo = gs > gf, gs == gf, gs < gf
        rel[up], rel[eq], rel[lo] = gf[up] / gs[up], gf[eq], gs[lo] / gf[lo]
        orient = 1 - np.abs(as_ - af) / (math.pi / 2)
        return 0.9994 / (1 + np.exp(-15 * (rel - 0.5))) * 0.9879 / (1 + np.exp(-22 * (orient - 0.8)))

    (ga, aa), (gb, ab), (gf, af) = edges(a), edges(b), edges(f)
    return np.sum(q(ga, aa, gf, af) * ga + q(gb, ab, gf, af) * gb) / np.sum(ga + gb)


def fspecial_gauss(n, sd):
    m = (n - 1) / 2
    yy, xx = np.ogrid[-m:m + 1, -m:m + 1]
    h = np.exp(-(xx**2 + yy**2) / (2 * sd * sd))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def msssim(x, y):
    win, w = fspecial_gauss(11, 1.5), [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mcs = []
    for level in range(5):
        mx, my = correlate2d(x, win, "valid"), correlate2d(y, win, "valid")
        sx = correlate2d(x * x, win, "valid") - mx**2
        sy = correlate2d(y * y, win, "valid") - my**2
        sxy = correlate2d(x * y, win, "valid") - mx * my
        cs = (2 * sxy + c2) / (sx + sy + c2)
        mcs.append(cs.mean())
        if level == 4:
            last = (((2 * mx * my + c1) / (mx**2 + my**2 + c1)) * cs).mean()
            break
        # imfilter(ones(2)/4, 'symmetric', 'same') then every other sample
        xp, yp = np.pad(x, ((0, 1), (0, 1)), "symmetric"), np.pad(y, ((0, 1), (0, 1)), "symmetric")
        x = correlate2d(xp, np.ones((2, 2)) / 4, "valid")[::2, ::2]
        y = correlate2d(yp, np.ones((2, 2)) / 4, "valid")[::2, ::2]
    return np.prod([m**wi for m, wi in zip(mcs[:4], w[:4], strict=True)]) * last ** w[4]


def nabf(f, a, b):
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
    ky = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]) / 8

    def edges(x):
        xe = np.pad(x, 1, mode="reflect")  # mirror without repeating the edge
        gv, gh = correlate2d(xe, kx, "valid"), correlate2d(xe, ky, "valid")
        with np.errstate(all="ignore"):
            ang = np.where((gv == 0) & (gh == 0), 0, np.arctan(gv / gh))
        return np.hypot(gv, gh), ang

    (ga, aa), (gb, ab), (gf, af) = edges(a), edges(b), edges(f)

    def q(gs, as_):
        rel = np.zeros_like(gs)
        ok = (gs != 0) & (gf != 0)
        rel[ok] = np.minimum(gs[ok], gf[ok]) / np.maximum(gs[ok], gf[ok])
        orient = np.abs(np.abs(as_ - af) - np.pi / 2) * 2 / np.pi
        return np.sqrt(0.9999 / (1 + np.exp(-19 * (rel - 0.5))) * 0.9995 / (1 + np.exp(-22 * (orient - 0.5))))

    wa, wb = np.where(ga >= 2, ga**1.5, 0), np.where(gb >= 2, gb**1.5, 0)
    na = (gf > ga) & (gf > gb)
    return np.sum(na * ((1 - q(ga, aa)) * wa + (1 - q(gb, ab)) * wb)) / np.sum(wa + wb)


def qc(f, a, b):
    win = fspecial_gauss(7, 1.5)

    def smap(x, y):
        mx, my = correlate2d(x, win, "valid"), correlate2d(y, win, "valid")
        sx = correlate2d(x * x, win, "valid") - mx**2
        sy = correlate2d(y * y, win, "valid") - my**2
        sxy = correlate2d(x * y, win, "valid") - mx * my
        return ((2 * mx * my + 2e-16) * (2 * sxy + 2e-16)) / ((mx**2 + my**2 + 2e-16) * (sx + sy + 2e-16)), sxy

    ma, saf = smap(a, f)
    mb, sbf = smap(b, f)
    s = saf / (saf + sbf)
    sim = s * ma + (1 - s) * mb
    sim[s < 0], sim[s > 1] = 0, 1
    return np.nanmean(sim)


def normalize1(x):
    return np.round((x - x.min()) / (x.max() - x.min()) * 255)


def grid(h, w):
    return np.meshgrid((np.arange(w) - w // 2) * 2 / w, (np.arange(h) - h // 2) * 2 / h)


def qcb(f, a, b):
    f, a, b = normalize1(f), normalize1(a), normalize1(b)
    h, w = f.shape
    u, v = grid(h, w)
    r = np.hypot(u * w / 30, v * h / 30)
    sd = np.exp(-(r / 15.3870) ** 2) - 0.7622 * np.exp(-(r / 1.3456) ** 2)
    yy, xx = np.mgrid[-15:16, -15:16]
    g1 = np.exp(-(xx**2 + yy**2) / 8) / (2 * np.pi * 4)
    g2 = np.exp(-(xx**2 + yy**2) / 32) / (2 * np.pi * 16)

    def cp(x):
        y = np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(x)) * sd))
        c = np.abs(correlate2d(y, g1, "same") / correlate2d(y, g2, "same") - 1)
        return c**3 / (c**2 + 1e-4)

    ca, cb, cf = cp(a), cp(b), cp(f)
    qa = np.where(ca < cf, ca / cf, cf / ca)
    qb = np.where(cb < cf, cb / cf, cf / cb)
    return np.mean((ca**2 * qa + cb**2 * qb) / (ca**2 + cb**2))


def qcv(f, a, b):
    f, a, b = normalize1(f), normalize1(a), normalize1(b)
    h, w = f.shape
    sob = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])

    def blockwise(x, fn):  # blkproc: 16x16 blocks, zero-padded at the ends
        x = np.pad(x, ((0, -h % 16), (0, -w % 16)))
        return np.array([[fn(x[i:i + 16, j:j + 16]) for j in range(0, x.shape[1], 16)]
                         for i in range(0, x.shape[0], 16)])

    def lam(x):
        g = np.hypot(correlate2d(x, sob, "same"), correlate2d(x, sob.T, "same"))
        return blockwise(g**5, np.sum)

    u, v = grid(h, w)
    r = np.hypot(u * w / 8, v * h / 8)
    csf = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))

    def dist(x):
        d = np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(x - f)) * csf))
        return blockwise(d**2, np.mean)

    la, lb = lam(a), lam(b)
    return np.real(np.sum(la * dist(a) + lb * dist(b)) / np.sum(la + lb))


def rerange(v):
    return np.ones(len(v)) if v.max() == v.min() else (v - v.min()) / (v.max() - v.min())


def fast_fmi_loops(a, b, f, w=3):
    """Haghighat & Razian's fmi.m (feature 'none'), transcribed into scalar loops; slow, so run on a crop."""
    half = w // 2
    n = w * w
    values = []
    for p in range(half, a.shape[0] - half):
        for q in range(half, a.shape[1] - half):
            f_sub = f[p - half:p + half + 1, q - half:q + half + 1].T.ravel()  # column-major, as sub(:)
            scores = []
            for src in (a, b):
                s_sub = src[p - half:p + half + 1, q - half:q + half + 1].T.ravel()
                if np.all(s_sub == f_sub):
                    scores.append(1.0)
                    continue
                s_sub = rerange(s_sub)
                f_sub = rerange(f_sub)
                sp, fp = s_sub / s_sub.sum(), f_sub / f_sub.sum()
                sc, fc = np.cumsum(sp), np.cumsum(fp)
                st, ft = sp - sp.mean(), fp - fp.mean()
                c = 0.0 if np.sum(st * ft) == 0 else np.sum(st * ft) / math.sqrt(np.sum(st * st) * np.sum(ft * ft))
                idx = np.arange(1, n + 1)
                s_sd = math.sqrt(max(np.sum(idx**2 * sp) - np.sum(idx * sp) ** 2, 0))
                f_sd = math.sqrt(max(np.sum(idx**2 * fp) - np.sum(idx * fp) ** 2, 0))

                def bound(x, y, c=c):
                    return min(x, y) if c >= 0 else max(x + y - 1, 0)

                if (c >= 0 and (c == 0 or s_sd == 0 or f_sd == 0)) or (c < 0 and (s_sd == 0 or f_sd == 0)):
                    k = 0.0
                else:
                    cov = sum(bound(fc[i], sc[j]) - fc[i] * sc[j] for i in range(n) for j in range(n))
                    k = c / (cov / (f_sd * s_sd))
                joint = 0.0
                for i in range(n):
                    for j in range(n):
                        cell = bound(fc[i], sc[j])
                        if i > 0:
                            cell -= bound(fc[i - 1], sc[j])
                        if j > 0:
                            cell -= bound(fc[i], sc[j - 1])
                        if i > 0 and j > 0:
                            cell += bound(fc[i - 1], sc[j - 1])
                        jp = k * cell + (1 - k) * fp[i] * sp[j]
                        if jp != 0:
                            joint += -jp * math.log2(abs(jp))
                hs = -np.sum(sp[sp != 0] * np.log2(sp[sp != 0]))
                hf = -np.sum(fp[fp != 0] * np.log2(fp[fp != 0]))
                mi = hs + hf - joint
                scores.append(0.0 if mi == 0 else 2 * mi / (hs + hf))
            values.append((scores[0] + scores[1]) / 2)
    return float(np.mean(values))


def main():
    f, a, b = read("fused.png"), read("ir.png"), read("vis_gray.png")
    mse = (np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2
    ref = {
        "en": en(f), "sd": np.std(f),
        "sf": math.sqrt(np.mean((f[:, 1:] - f[:, :-1]) ** 2) + np.mean((f[1:] - f[:-1]) ** 2)),
        "ag": ag(f),
        "mi": mutual_info_score(f.ravel(), a.ravel()) + mutual_info_score(f.ravel(), b.ravel()),
        "scd": corr(f - b, a) + corr(f - a, b),
        "vif": vifp(a, f) + vifp(b, f),
        "qabf": qabf(f, a, b),
        "ssim": structural_similarity(f, a, data_range=2) + structural_similarity(f, b, data_range=2),
        "cc": (corr(a, f) + corr(b, f)) / 2,
        "psnr": 10 * math.log10(f.max() ** 2 / mse),
        "ms_ssim": msssim(f, a) + msssim(f, b),
        "nabf": nabf(f, a, b),
        "qc": qc(f, a, b),
        "qcb": qcb(f, a, b),
        "qcv": qcv(f, a, b),
        # FMI on the top-left 64x64 crop only: the loop transcription is slow.
        "fmi_crop64": fast_fmi_loops(a[:64, :64], b[:64, :64], f[:64, :64]),
    }
    (HERE / "reference.json").write_text(json.dumps({k: float(v) for k, v in ref.items()}, indent=2) + "\n")
    print(json.dumps(ref, indent=2, default=float))


if __name__ == "__main__":
    main()
