"""Registration of an infrared-visible pair that is not pixel-aligned: the visible image warped into the infrared frame.

A coarse search gives the start: at a range of scales and small rotations of the visible image, the agreement of
the two normalised gradient fields (:mod:`cldyn.data.registration`) is computed at every shift at once (FFT). The
best starts are then refined coarse to fine by maximising that agreement, which does not care whether an edge is
brighter on the left in one camera and on the right in the other.

The result says when it cannot be trusted: too little structure in either image, a warp outside the model's range,
or a confidence below :attr:`AlignConfig.min_confidence`. The confidence is how sharply the agreement peaks at the
found warp against every shift of it up to a tenth of the frame, in standard deviations: a registered pair has one
clear peak there (typically 4-8), an unrelated pair or a wrong warp does not (under 4). Where the images' peak is
under the threshold, it is measured again on their local contrast (:func:`local_contrast`, which gives the faint
edges of a dark night image their weight beside a street light's), and the larger counts.

Warps are 3x3 matrices that map infrared pixel coordinates ``(x, y, 1)`` to visible pixel coordinates (OpenCV's
convention: pixel ``i`` has its centre at ``i``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from cldyn.data.confidence import pair_local_contrast, registration_confidence
from cldyn.data.io import Image, atomic_write_bytes, luma, three_channels, to_single_channel
from cldyn.data.registration import Agreement, blurred_level, edge_points, refine_level, shift_search
from cldyn.errors import CldynError, InputError

ALIGN_MODELS = ("none", "translation", "affine", "homography")
# the most accurate model in `cldyn bench align` on every set, and no more often wrong than affine
DEFAULT_ALIGN_MODEL = "homography"


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
        levels: pyramid levels of the coarse-to-fine refinement (each halves the size).
        scales: the starting scales tried, relative to the ratio of the two images' sizes (the visible camera may
            see a wider or narrower field than the infrared one).
        angles: the starting rotations tried, in degrees.
        starts: how many of the best starts are refined at the coarsest level.
        iterations: L-BFGS iterations per level.
        blur: Gaussian blur (pixels of each level) before the gradients.
        max_points: at most this many infrared edge pixels per level.
        edge_share, fine_edge_share: NGF's edge parameter, as a share of the mean gradient magnitude, on the coarse
            levels (a wide basin) and on the finest (the strong edges that both cameras share).
        min_confidence: the least confidence (peak sharpness, in standard deviations) of a registered pair.
        contrast_sigma: the window (Gaussian sigma, pixels of a 640-pixel frame) of the local contrast whose peak
            sharpness is the confidence's second measure, taken where the first is under ``min_confidence`` (0:
            the images' own only).
        contrast_weight: that second measure counts at this share: it runs higher than the first on every pair
            (on unrelated pairs at most 2.3; on right night warps a median 5.4; on wrong ones up to 4.5).
        min_structure: the least share of edge pixels in each image.
        perspective_prior: what a ``homography`` pays, at each level, for the perspective that the level adds, per
            ``0.01**2`` of its two perspective terms in the infrared frame's ``[-1, 1]`` coordinates (0.01: about
            3 pixels at the corners of a 640-pixel frame), against an agreement of typically 0.1-0.3: two cameras
            of one rig see the scene with little perspective between them, and edges bunched in part of the frame
            hold it loosely.
    """

    model: str = DEFAULT_ALIGN_MODEL
    work_side: int = 640
    levels: int = 3
    scales: tuple[float, ...] = tuple(float(s) for s in np.round(np.geomspace(0.6, 1.25, 17), 4))
    angles: tuple[float, ...] = (-4.0, 0.0, 4.0)
    starts: int = 3
    iterations: int = 30
    blur: float = 1.0
    max_points: int = 20000
    edge_share: float = 0.5
    fine_edge_share: float = 2.0
    min_confidence: float = 4.0
    contrast_sigma: float = 8.0
    contrast_weight: float = 0.8
    min_structure: float = 0.01
    perspective_prior: float = 0.003

    def __post_init__(self) -> None:
        if self.model not in ALIGN_MODELS:
            raise CldynError(f"unknown alignment model {self.model!r}; choose from {', '.join(ALIGN_MODELS)}")


@dataclass(frozen=True)
class Alignment:
    """A registered pair.

    Attributes:
        warp: ``(3, 3)`` infrared pixel -> visible pixel.
        aligned: the visible image resampled into the infrared frame (the infrared image's size; what the visible
            camera does not see is black).
        confidence: how sharply the pair's edges meet at ``warp``, in standard deviations (typically 4-8 for a
            registered pair; ``inf`` for ``none``).
        model: the warp model used.
    """

    warp: np.ndarray
    aligned: np.ndarray
    confidence: float
    model: str


def edge_map(gray: np.ndarray) -> np.ndarray:
    """Log-compressed gradient magnitude of a blurred luminance ``(H, W)`` in [0, 1], scaled to unit mean first:
    what both cameras share, with the faint edges of a dark visible image kept in play beside strong infrared ones.

    >>> e = edge_map(np.tile(np.r_[np.zeros(8), np.ones(8)], (16, 1)))
    >>> bool(e[:, 7:9].min() > e[:, :4].max()), e.dtype
    (True, dtype('float32'))
    """
    g = cv2.GaussianBlur(np.asarray(gray, np.float32), (0, 0), 1.0)
    mag = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    mean = float(mag.mean())
    return np.log1p(4 * mag / mean) if mean > 0 else mag


def structure(gray: np.ndarray) -> float:
    """Share of pixels whose edge strength is over twice the image's mean (0 for a flat image)."""
    return float((edge_map(gray) > np.log1p(8.0)).mean())


def canvas_transform(vis_hw: tuple[int, ...], ir_hw: tuple[int, ...], scale: float, angle: float,
                     pad: tuple[int, int]) -> np.ndarray:
    """``(2, 3)``: visible pixels -> canvas pixels, the visible image rotated by ``angle`` degrees about its centre,
    shrunk by ``scale`` (visible pixels per infrared pixel) and centred on an infrared frame of ``ir_hw`` with
    ``pad = (py, px)`` pixels more on each side (``cv2.warpAffine``'s matrix).

    >>> canvas_transform((4, 6), (2, 3), 2.0, 0.0, (1, 1)) @ np.array([2.5, 1.5, 1.0])  # centre to centre
    array([2. , 1.5])
    """
    centre = np.array([(vis_hw[1] - 1) / 2, (vis_hw[0] - 1) / 2])
    m = cv2.getRotationMatrix2D(tuple(centre), angle, 1 / scale)
    m[:, 2] += np.array([(ir_hw[1] - 1) / 2 + pad[1], (ir_hw[0] - 1) / 2 + pad[0]]) - centre
    return m


def initial_warps(ir: np.ndarray, vis: np.ndarray, base_scale: float, scales: tuple[float, ...],
                  angles: tuple[float, ...], keep: int, reach: float = 0.25) -> list[np.ndarray]:
    """The ``keep`` best starting warps (infrared -> visible pixels of these images): for each angle (degrees) and
    scale ``base_scale * s`` (visible pixels per infrared pixel), the visible image is rotated and scaled onto a
    canvas centred on the infrared frame, ``reach`` of its size wider on each side, and every shift is scored at
    once by the gradient fields' agreement (:func:`cldyn.data.registration.shift_search`)."""
    h, w = ir.shape
    py, px = round(reach * h), round(reach * w)
    found = []
    for s in scales:
        for angle in angles:
            to_canvas = canvas_transform(vis.shape, ir.shape, base_scale * s, angle, (py, px))
            canvas = cv2.warpAffine(vis, to_canvas, (w + 2 * px, h + 2 * py), flags=cv2.INTER_AREA,
                                    borderMode=cv2.BORDER_REPLICATE)
            score, (dx, dy) = shift_search(ir, canvas, (py, px))
            shift = np.array([[1, 0, dx + px], [0, 1, dy + py], [0, 0, 1]], np.float64)
            found.append((score, np.linalg.inv(np.vstack([to_canvas, [0, 0, 1]])) @ shift))
    found.sort(key=lambda r: -r[0])
    return [m for _, m in found[:keep]]


def check_range(warp: np.ndarray, ir_hw: tuple[int, int], vis_hw: tuple[int, int]) -> str | None:
    """Why ``warp`` lies outside what two cameras of one rig give, or ``None``."""
    h, w = ir_hw
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], np.float64).T
    mapped = warp @ corners
    if not np.all(np.isfinite(mapped)) or np.any(mapped[2] <= 1e-6):
        return "the warp folds the infrared frame over itself"
    xy = mapped[:2] / mapped[2]
    area = 0.5 * abs(np.dot(xy[0], np.roll(xy[1], 1)) - np.dot(xy[1], np.roll(xy[0], 1)))
    scale = np.sqrt(area / ((h - 1) * (w - 1)))
    if not 0.1 < scale < 10:
        return f"a scale of {scale:.2f} visible pixels per infrared pixel is beyond the model's range"
    sides = np.linalg.norm(np.roll(xy, -1, axis=1) - xy, axis=0)
    if sides.max() > 3 * sides.min() * max(w, h) / min(w, h):
        return "the warp distorts the infrared frame beyond what two cameras of one rig give"
    vh, vw = vis_hw
    lo, hi = xy.min(1), xy.max(1)
    covered = max(0.0, min(hi[0], vw) - max(lo[0], 0)) * max(0.0, min(hi[1], vh) - max(lo[1], 0))
    if covered < 0.5 * (hi[0] - lo[0]) * (hi[1] - lo[1]):
        return "the infrared frame falls mostly outside the visible image"
    return None


def _stages(model: str, coarsest: bool) -> tuple[str, ...]:
    """The models refined in turn at a level: the coarsest starts simple (a shift, then an affine warp) so that a
    rough start does not let the extra freedom run away."""
    if not coarsest:
        return (model,)
    return {"translation": ("translation",), "affine": ("translation", "affine"),
            "homography": ("translation", "affine")}[model]


def pair_confidence(ir: np.ndarray, vis: np.ndarray, warp: np.ndarray, f: float, cfg: AlignConfig) -> float:
    """The confidence of a registration: :func:`registration_confidence` on the images; where that is under
    ``cfg.min_confidence``, the larger of it and, weighted by ``cfg.contrast_weight``, the same on their
    local contrast (:func:`cldyn.data.confidence.pair_local_contrast`, window ``cfg.contrast_sigma``; measured
    only there, since it costs more than the registration's refinement)."""
    confidence = registration_confidence(ir, vis, warp, f, cfg.blur)
    if confidence >= cfg.min_confidence or not cfg.contrast_sigma:
        return confidence
    contrast = registration_confidence(*pair_local_contrast(ir, vis, cfg.contrast_sigma), warp, f, cfg.blur)
    return max(confidence, cfg.contrast_weight * contrast)


def _refine(ir: np.ndarray, vis: np.ndarray, candidates: list[np.ndarray], cfg: AlignConfig, work: float,
            levels: int) -> np.ndarray:
    """The best of ``candidates`` (infrared -> visible pixels) refined with ``cfg.model`` coarse to fine over
    ``levels`` pyramid levels: at the coarsest every candidate is refined and the best kept, the finer levels refine
    that one."""
    for level in range(levels - 1, -1, -1):
        f = work / 2 ** level
        ir_l, m_ir = blurred_level(ir, f, cfg.blur)
        share = cfg.fine_edge_share if level == 0 else cfg.edge_share
        points = edge_points(ir_l, cfg.max_points, share)
        if len(points.n_ir) < 20:
            raise AlignmentError("too little structure in the infrared image to register on")
        results = []
        for start in candidates:
            if check_range(start, ir.shape, vis.shape) is not None:  # a start or a refinement that ran away
                continue
            scale = float(np.sqrt(abs(np.linalg.det(start[:2, :2]))))  # visible pixels per infrared pixel, now
            vis_l, m_vis = blurred_level(vis, f / scale, cfg.blur)
            lw = m_vis @ start @ np.linalg.inv(m_ir)
            for stage in _stages(cfg.model, level == levels - 1):
                agreement = Agreement(points, vis_l, lw, ir_l.shape, stage, share, cfg.perspective_prior)
                lw, value = refine_level(agreement, cfg.iterations)
            results.append((value, np.linalg.inv(m_vis) @ lw @ m_ir))
        if not results:
            raise AlignmentError("no warp within the model's range overlays the two images' edges")
        candidates = [max(results, key=lambda r: r[0])[1]]  # the finer levels refine the best
    return candidates[0]


def estimate_warp(ir: np.ndarray, vis: np.ndarray, cfg: AlignConfig = AlignConfig()) -> tuple[np.ndarray, float]:
    """``(warp, confidence)``: the 3x3 warp from infrared to visible pixels, and how sharply the pair's edges meet
    there (:func:`registration_confidence`).

    Args:
        ir: infrared luminance ``(H, W)`` in [0, 1].
        vis: visible luminance ``(h, w)`` in [0, 1], any size.

    Raises:
        AlignmentError: too little structure, a warp out of range, or a confidence below ``cfg.min_confidence``.
    """
    if cfg.model == "none":
        if ir.shape != vis.shape[:2]:
            raise AlignmentError(f"sizes differ ({ir.shape[1]}x{ir.shape[0]} and {vis.shape[1]}x{vis.shape[0]}); "
                                 "choose an alignment model")
        return np.eye(3), float("inf")
    ir, vis = np.asarray(ir, np.float32), np.asarray(vis, np.float32)
    for name, img in (("infrared", ir), ("visible", vis)):
        if (s := structure(img)) < cfg.min_structure:
            raise AlignmentError(f"too little structure in the {name} image to register on ({100 * s:.1f}% edge "
                                 "pixels)")
    work = min(1.0, cfg.work_side / max(ir.shape))
    base = float(np.sqrt(vis.size / ir.size))  # visible pixels per infrared pixel, were the fields of view equal
    # no level under 80 pixels on the longer side: phase correlation needs some room
    levels = max(1, min(cfg.levels, 1 + int(np.log2(max(1.0, work * max(ir.shape) / 80)))))
    top = work / 2 ** (levels - 1)
    # a shift keeps the scale of the sizes' ratio and no rotation
    scales, angles = ((1.0,), (0.0,)) if cfg.model == "translation" else (cfg.scales, cfg.angles)
    # the start: the shift search at the coarsest level, the visible image at the infrared image's scale
    ir_c, m_ir = blurred_level(ir, top, cfg.blur)
    vis_c, m_vis = blurred_level(vis, top / base, cfg.blur)
    starts = [np.linalg.inv(m_vis) @ w @ m_ir for w in initial_warps(ir_c, vis_c, 1.0, scales, angles, cfg.starts)]
    # and the rig's prior: the two frames centred on each other at the ratio of their sizes
    centre = np.array([[base, 0, (vis.shape[1] - 1) / 2 - base * (ir.shape[1] - 1) / 2],
                       [0, base, (vis.shape[0] - 1) / 2 - base * (ir.shape[0] - 1) / 2], [0, 0, 1]])
    starts.append(centre)
    warp = _refine(ir, vis, starts, cfg, work, levels)
    confidence = pair_confidence(ir, vis, warp, work / 2 if levels > 1 else work, cfg)
    if problem := check_range(warp, ir.shape[:2], vis.shape[:2]):
        raise AlignmentError(problem, confidence)
    if confidence < cfg.min_confidence:
        raise AlignmentError(f"no consistent alignment: confidence {confidence:.2f} is below "
                             f"{cfg.min_confidence:.2f} (unrelated images, or too little shared structure)",
                             confidence)
    return warp, confidence


def warp_to_infrared(vis: np.ndarray, warp: np.ndarray, ir_hw: tuple[int, int]) -> np.ndarray:
    """The visible image (gray or RGB, any dtype) resampled into the infrared frame ``(H, W)``; pixels that the
    visible camera does not see are black."""
    h, w = ir_hw
    return cv2.warpPerspective(vis, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def align(ir: np.ndarray, vis: np.ndarray, model: str = DEFAULT_ALIGN_MODEL, cfg: AlignConfig | None = None
          ) -> Alignment:
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
    cfg = AlignConfig(model=model) if cfg is None else replace(cfg, model=model)
    ir_y, vis = luma(np.asarray(ir, np.float32)), np.asarray(vis, np.float32)
    warp, confidence = estimate_warp(ir_y, luma(vis), cfg)
    return Alignment(warp, warp_to_infrared(vis, warp, ir_y.shape), confidence, cfg.model)


def align_images(ir: Image, vis: Image, model: str = DEFAULT_ALIGN_MODEL, cfg: AlignConfig | None = None
                 ) -> tuple[Image, Alignment]:
    """The visible image of a pair registered into the infrared frame, as an :class:`Image` (same bits and path).

    Raises:
        InputError: naming the visible file, when the pair cannot be registered (the reason, and the confidence).
    """
    try:
        result = align(to_single_channel(ir), vis.pixels, model, cfg)
    except AlignmentError as exc:
        reached = "" if exc.confidence is None or "confidence" in exc.reason else \
            f" (confidence {exc.confidence:.2f})"
        raise InputError(vis.path, f"cannot be aligned to {ir.path.name}: {exc.reason}{reached}") from None
    aligned = np.clip(result.aligned, 0.0, 1.0).astype(np.float32)
    return Image(pixels=aligned, bits=vis.bits, path=vis.path), result


def checkerboard(ir: np.ndarray, vis: np.ndarray, squares: int = 8) -> np.ndarray:
    """``(H, W, 3)``: squares of the infrared and the visible image in turn, ``squares`` across the wider side, so
    that edges running from one square into the next show how well the pair is registered. A visible image of
    another size is stretched to the infrared frame (the pair as it would be fused without registration).

    >>> board = checkerboard(np.zeros((4, 4)), np.ones((4, 4)), squares=2)
    >>> board[..., 0].astype(int).tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    """
    h, w = ir.shape[:2]
    a = three_channels(np.asarray(ir, np.float32))
    v = np.asarray(vis, np.float32)
    if v.shape[:2] != (h, w):
        v = cv2.resize(v, (w, h), interpolation=cv2.INTER_AREA)
    v = three_channels(v)
    side = max(1, int(np.ceil(max(h, w) / squares)))
    ys, xs = np.mgrid[:h, :w]
    take_vis = ((ys // side + xs // side) % 2 == 1)[..., None]
    return np.where(take_vis, v, a)


def warp_sidecar(path: str | Path) -> Path:
    """Where the warp of the output ``path`` is written: ``NAME.warp.json`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.warp.json")


def write_warp(path: str | Path, result: Alignment, ir: str | Path, vis: str | Path) -> Path:
    """The warp (infrared pixel -> visible pixel, 3x3), the model and the confidence of one pair, as JSON."""
    confidence = result.confidence if np.isfinite(result.confidence) else None
    record = {"infrared": str(ir), "visible": str(vis), "model": result.model, "confidence": confidence,
              "warp": np.asarray(result.warp).tolist(),
              "convention": "maps infrared pixel coordinates (x, y, 1) to visible pixel coordinates; pixel centres "
                            "at integers (OpenCV)"}
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode())
    return path


__all__ = ["ALIGN_MODELS", "DEFAULT_ALIGN_MODEL", "AlignConfig", "Alignment", "AlignmentError", "align", "align_images",
           "canvas_transform", "check_range", "checkerboard", "edge_map", "estimate_warp", "initial_warps",
           "pair_confidence", "structure", "warp_sidecar", "warp_to_infrared", "write_warp"]
