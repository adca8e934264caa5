"""Registration of an infrared-visible pair that is not pixel-aligned: the visible image warped into the infrared frame.

Intensities do not correspond between the two cameras (a warm pedestrian is bright in one and dark in the other), so
the pair is registered on what both see: edges. Both images become gradient-magnitude maps (Sobel of the blurred
luminance, polarity dropped). A coarse search over scales with phase correlation (:func:`cv2.phaseCorrelate`) gives
the starting scale and shift, and enhanced correlation coefficient maximisation (ECC, Evangelidis & Psarakis, TPAMI
2008; :func:`cv2.findTransformECC`) refines the warp coarse to fine over an image pyramid.

The result says when it cannot be trusted: too little structure in either image, a warp outside the model's range,
or a final edge correlation below :attr:`AlignConfig.min_confidence` (an unrelated pair converges to a low one).

Warps are 3x3 matrices that map infrared pixel coordinates ``(x, y, 1)`` to visible pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cldyn.errors import CldynError

ALIGN_MODELS = ("none", "translation", "affine", "homography")
_ECC_MOTION = {"translation": cv2.MOTION_TRANSLATION, "affine": cv2.MOTION_AFFINE,
               "homography": cv2.MOTION_HOMOGRAPHY}


class AlignmentError(CldynError):
    """A pair that cannot be registered: the reason, and the confidence reached (``None`` before any search)."""

    def __init__(self, reason: str, confidence: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.confidence = reason, confidence


@dataclass(frozen=True)
class AlignConfig:
    """Settings of :func:`align`.

    Attributes:
        model: the warp: ``translation``, ``affine`` or ``homography`` (``none``: the identity, same sizes only).
        work_side: the infrared image is registered at most this long on its longer side (warps are rescaled).
        levels: pyramid levels of the coarse-to-fine refinement.
        scale_factors: starting scales tried, relative to the ratio of the two images' sizes.
        iterations: ECC iterations per level.
        min_confidence: the least final edge correlation (ECC's coefficient) of a registered pair.
        min_structure: the least share of pixels with a clear edge in each image.
    """

    model: str = "affine"
    work_side: int = 640
    levels: int = 3
    scale_factors: tuple[float, ...] = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1)
    iterations: int = 60
    min_confidence: float = 0.35
    min_structure: float = 0.01

    def __post_init__(self) -> None:
        if self.model not in ALIGN_MODELS:
            raise CldynError(f"unknown alignment model {self.model!r}; choose from {', '.join(ALIGN_MODELS)}")


@dataclass(frozen=True)
class Alignment:
    """A registered pair: ``warp`` (3x3, infrared pixel -> visible pixel), ``aligned`` (the visible image in the
    infrared frame, the infrared image's size), ``confidence`` (the final edge correlation, in [-1, 1]) and the
    ``model`` used."""

    warp: np.ndarray
    aligned: np.ndarray
    confidence: float
    model: str


def edge_map(gray: np.ndarray) -> np.ndarray:
    """Log-compressed gradient magnitude of a blurred luminance ``(H, W)`` in [0, 1]: what both cameras share. The
    magnitude is first scaled to unit mean, and ``log(1 + 4 m)`` keeps the faint edges of a dark visible image in
    play beside the strong ones of the infrared image.

    >>> e = edge_map(np.tile(np.r_[np.zeros(8), np.ones(8)], (16, 1)))
    >>> bool(e[:, 7:9].min() > e[:, :4].max()), e.dtype
    (True, dtype('float32'))
    """
    g = cv2.GaussianBlur(np.asarray(gray, np.float32), (0, 0), 1.0)
    mag = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    mean = float(mag.mean())
    return np.log1p(4 * mag / mean) if mean > 0 else mag


def _structure(edges: np.ndarray) -> float:
    """Share of pixels whose edge strength stands out (over twice the mean magnitude)."""
    return float((edges > np.log1p(8.0)).mean())


def _scaled(matrix: np.ndarray, factor: float) -> np.ndarray:
    """The same warp for both images resized by ``factor``: ``S W S^-1``."""
    s = np.diag([factor, factor, 1.0])
    return s @ matrix @ np.linalg.inv(s)


def _initial_warp(ir_e: np.ndarray, vis_e: np.ndarray, factors: tuple[float, ...],
                  angles: tuple[float, ...] = (0.0,)) -> np.ndarray:
    """Scale, rotation and shift that best overlay the edge maps: phase correlation at each candidate scale and
    angle (degrees) of the visible image."""
    h, w = ir_e.shape
    base = np.sqrt(vis_e.shape[0] * vis_e.shape[1] / (h * w))
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    centre_v = np.array([vis_e.shape[1] / 2, vis_e.shape[0] / 2])
    best, best_warp = -1.0, np.eye(3)
    for f in factors:
        s = base * f  # visible pixels per infrared pixel
        for angle in angles:
            # visible -> an infrared-sized canvas: rotate about the visible centre, scale by 1/s, centre on the canvas
            to_canvas = cv2.getRotationMatrix2D(tuple(centre_v), angle, 1 / s)
            to_canvas[:, 2] += np.array([w / 2, h / 2]) - centre_v
            canvas = cv2.warpAffine(vis_e, to_canvas, (w, h), flags=cv2.INTER_AREA)
            (sx, sy), response = cv2.phaseCorrelate(ir_e, canvas, window)
            if response > best:
                # canvas(p + shift) ~ ir(p): infrared p -> canvas p + shift -> visible through the inverse map
                best = response
                shift = np.array([[1, 0, sx], [0, 1, sy], [0, 0, 1]], np.float64)
                best_warp = np.linalg.inv(np.vstack([to_canvas, [0, 0, 1]])) @ shift
    return best_warp


def _check_range(warp: np.ndarray, ir_hw: tuple[int, int], vis_hw: tuple[int, int]) -> str | None:
    """Why ``warp`` lies outside what two cameras of one rig give, or ``None``."""
    h, w = ir_hw
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64).T
    mapped = warp @ corners
    if np.any(mapped[2] <= 1e-6):
        return "the warp folds the infrared frame over itself"
    xy = mapped[:2] / mapped[2]
    area = 0.5 * abs(np.dot(xy[0], np.roll(xy[1], 1)) - np.dot(xy[1], np.roll(xy[0], 1)))
    vh, vw = vis_hw
    inside = (np.clip(xy[0], 0, vw) == xy[0]) & (np.clip(xy[1], 0, vh) == xy[1])
    scale = np.sqrt(area / (h * w))
    if not 0.1 < scale < 10:
        return f"a scale of {scale:.2f} visible pixels per infrared pixel is beyond the model's range"
    lo, hi = xy.min(1), xy.max(1)
    covered = max(0.0, min(hi[0], vw) - max(lo[0], 0)) * max(0.0, min(hi[1], vh) - max(lo[1], 0))
    if covered < 0.5 * (hi[0] - lo[0]) * (hi[1] - lo[1]) and not inside.any():
        return "the infrared frame falls mostly outside the visible image"
    return None


def estimate_warp(ir: np.ndarray, vis: np.ndarray, cfg: AlignConfig = AlignConfig()) -> tuple[np.ndarray, float]:
    """``(warp, confidence)``: the 3x3 warp from infrared to visible pixels and the final edge correlation.

    Args:
        ir: infrared luminance ``(H, W)`` in [0, 1].
        vis: visible luminance ``(h, w)`` in [0, 1], any size.

    Raises:
        AlignmentError: too little structure, ECC failing to converge, a warp out of range, or a confidence below
            ``cfg.min_confidence``.
    """
    if cfg.model == "none":
        if ir.shape != vis.shape[:2]:
            raise AlignmentError(f"sizes differ ({ir.shape[1]}x{ir.shape[0]} and {vis.shape[1]}x{vis.shape[0]}); "
                                 "choose an alignment model")
        return np.eye(3), 1.0
    work = min(1.0, cfg.work_side / max(ir.shape))
    ir_w = cv2.resize(ir.astype(np.float32), None, fx=work, fy=work, interpolation=cv2.INTER_AREA) \
        if work < 1 else ir.astype(np.float32)
    vis_w = cv2.resize(vis.astype(np.float32), None, fx=work, fy=work, interpolation=cv2.INTER_AREA) \
        if work < 1 else vis.astype(np.float32)
    ir_e, vis_e = edge_map(ir_w), edge_map(vis_w)
    for name, e in (("infrared", ir_e), ("visible", vis_e)):
        if _structure(e) < cfg.min_structure:
            raise AlignmentError(f"too little structure in the {name} image to register on "
                                 f"({100 * _structure(e):.1f}% edge pixels)")
    top = 2 ** (cfg.levels - 1)
    coarse = cv2.resize(ir_e, None, fx=1 / top, fy=1 / top, interpolation=cv2.INTER_AREA)
    coarse_vis = cv2.resize(vis_e, None, fx=1 / top, fy=1 / top, interpolation=cv2.INTER_AREA)
    warp = _scaled(_initial_warp(coarse, coarse_vis, cfg.scale_factors), top)  # at the work size
    motion = _ECC_MOTION[cfg.model]
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, cfg.iterations, 1e-5)
    rho = -1.0
    for level in range(cfg.levels - 1, -1, -1):
        f = 1 / 2 ** level
        t = cv2.resize(ir_e, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if level else ir_e
        v = cv2.resize(vis_e, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if level else vis_e
        m = _scaled(warp, f)
        m = (m / m[2, 2]).astype(np.float32) if cfg.model == "homography" else m[:2].astype(np.float32)
        try:
            rho, m = cv2.findTransformECC(t, v, m, motion, criteria, None, 5)
        except cv2.error:
            raise AlignmentError("the edge correlation did not converge (unrelated images, or a warp beyond the "
                                 "model's range)", None) from None
        full = np.vstack([m, [0, 0, 1]]) if m.shape[0] == 2 else m
        warp = _scaled(full.astype(np.float64), 1 / f)
    warp = _scaled(warp, 1 / work)  # back to the images' own pixels
    if problem := _check_range(warp, ir.shape[:2], vis.shape[:2]):
        raise AlignmentError(problem, float(rho))
    if rho < cfg.min_confidence:
        raise AlignmentError(f"no consistent alignment: edge correlation {rho:.2f} is below "
                             f"{cfg.min_confidence:.2f} (unrelated images, or too little shared structure)",
                             float(rho))
    return warp, float(rho)


def warp_to_infrared(vis: np.ndarray, warp: np.ndarray, ir_hw: tuple[int, int]) -> np.ndarray:
    """The visible image (gray or RGB, any dtype) resampled into the infrared frame ``(H, W)``; pixels that the
    visible camera does not see are black."""
    h, w = ir_hw
    return cv2.warpPerspective(vis, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _luma(pixels: np.ndarray) -> np.ndarray:
    return pixels if pixels.ndim == 2 else pixels @ np.array([0.299, 0.587, 0.114], np.float32)


def align(ir: np.ndarray, vis: np.ndarray, model: str = "affine", cfg: AlignConfig | None = None) -> Alignment:
    """Register ``vis`` to ``ir`` and resample it into the infrared frame.

    Args:
        ir: infrared ``(H, W)`` (or RGB, reduced to its luminance) in [0, 1].
        vis: visible ``(h, w)`` or ``(h, w, 3)`` in [0, 1]; it may differ in size and aspect ratio.
        model: ``none``, ``translation``, ``affine`` or ``homography`` (overrides ``cfg.model``).

    Raises:
        AlignmentError: the pair cannot be registered (the message says why).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> scene = cv2.GaussianBlur(rng.random((120, 160)).astype(np.float32), (0, 0), 2)
        >>> scene = (scene - scene.min()) / (scene.max() - scene.min())
        >>> shifted = np.roll(scene, (3, 5), axis=(0, 1))
        >>> a = align(scene, shifted, "translation")
        >>> np.round(a.warp[:2, 2]).tolist(), a.aligned.shape
        ([5.0, 3.0], (120, 160))
    """
    cfg = AlignConfig(model=model) if cfg is None else AlignConfig(**{**cfg.__dict__, "model": model})
    ir_y, vis = _luma(np.asarray(ir, np.float32)), np.asarray(vis, np.float32)
    warp, confidence = estimate_warp(ir_y, _luma(vis), cfg)
    return Alignment(warp, warp_to_infrared(vis, warp, ir_y.shape), confidence, cfg.model)


__all__ = ["ALIGN_MODELS", "AlignConfig", "Alignment", "AlignmentError", "align", "edge_map", "estimate_warp",
           "warp_to_infrared"]
