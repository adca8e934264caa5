"""Compute the reference metric values in ``reference.json`` for the fixture pair in this folder.

Run once (``python tests/data/metrics/make_reference.py``); the test suite then compares cldyn's metrics with the
stored numbers. The references are independent re-derivations of the definitions used by the public CDDFuse
evaluator (MMIF-CDDFuse ``utils/Evaluator.py``), written here from its formulas with SciPy's ``convolve2d``,
scikit-image's ``structural_similarity`` (data range 2, as scikit-image 0.19 used for float input) and
scikit-learn's ``mutual_info_score`` (natural log) rather than cldyn's torch code, so a plumbing error in either
shows up as a mismatch.

Inputs (all 96x72, 8-bit): ``ir.png`` (infrared), ``vis_gray.png`` (the visible image made gray the CDDFuse way:
OpenCV BGR->GRAY on float32, rounded), ``fused.png`` (the shipped VFN's fused luminance of the same pair).
"""

import json
import math
from pathlib import Path

import cv2
import numpy as np
from scipy.signal import convolve2d
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
    }
    (HERE / "reference.json").write_text(json.dumps({k: float(v) for k, v in ref.items()}, indent=2) + "\n")
    print(json.dumps(ref, indent=2, default=float))


if __name__ == "__main__":
    main()
