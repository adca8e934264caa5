"""Edge preservation: Qabf (Xydeas-Petrovic) and its artefact measure Nabf."""

from __future__ import annotations

import math

import cv2
import numpy as np

from cldyn.evaluation.metrics.filters import check_gray, filter_same_zero

# Xydeas & Petrovic (2000) constants.
_QABF = {"tg": 0.9994, "kg": -15.0, "dg": 0.5, "ta": 0.9879, "ka": -22.0, "da": 0.8}


_SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)


_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)


def _edge_strength_orientation(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sx = filter_same_zero(img, _SOBEL_X)
    sy = filter_same_zero(img, _SOBEL_Y)
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
    f, a, b = check_gray(fused, a, b)
    ga, aa = _edge_strength_orientation(a)
    gb, ab = _edge_strength_orientation(b)
    gf, af = _edge_strength_orientation(f)
    qaf = _edge_preservation(ga, aa, gf, af, variant)
    qbf = _edge_preservation(gb, ab, gf, af, variant)
    den = float(np.sum(ga + gb))
    return float(np.sum(qaf * ga + qbf * gb) / den) if den > 0 else float("nan")


def nabf(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Nabf, the modified fusion-artifact measure of B. K. Shreyamsha Kumar (SIViP 2013), from Petrovic's
    objective fusion performance code: Sobel/8 edges with mirrored borders, edge preservation
    ``Q = sqrt(Qg Qa)`` with Nrg 0.9999, kg 19, sigma_g 0.5, Nra 0.9995, ka 22, sigma_a 0.5; weights g^1.5 where
    g >= 2; artifacts counted where the fused edge is stronger than both sources (lower is better, 0 = none)."""
    f, a, b = check_gray(fused, a, b)
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
