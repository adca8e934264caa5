"""Cross-modal registration by normalised gradient fields: what :func:`cldyn.data.align.align` optimises.

Intensities do not correspond between an infrared and a visible camera (a warm pedestrian is bright in one and may
be dark in the other), but both see the same edges. The normalised gradient field (NGF; Haber & Modersitzki, 2006)
of an image is ``g / sqrt(|g|^2 + eta^2)``: a unit vector across each edge, near zero in flat regions. At the right
warp the two fields are parallel or anti-parallel wherever the infrared image has an edge, so the *agreement*

    A(warp) = mean over the infrared edge pixels x of (n_ir(x) . n_vis_warped(x))^2

is largest there, whatever the polarity. It is evaluated only at the infrared image's edge pixels: the visible
gradient is sampled where the warp takes them and carried into the infrared frame by the warp's Jacobian, which is
exactly the gradient of the warped visible image there. That needs no full warped image per step, so L-BFGS can run
at the full infrared resolution. The warp is refined coarse to fine over an image pyramid.

Pixel convention: OpenCV's (the centre of pixel ``i`` is at ``i``). A warp is a 3x3 matrix that maps infrared pixel
coordinates ``(x, y, 1)`` to visible pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

N_PARAMS = {"translation": 2, "affine": 6, "homography": 8}


def level_matrix(fx: float, fy: float | None = None) -> np.ndarray:
    """The map from an image's pixel coordinates to those of the image resized by ``(fx, fy)`` (``cv2.resize``:
    pixel centres move too).

    >>> level_matrix(0.5) @ np.array([1.5, 1.5, 1.0])   # between pixels 1 and 2 -> the centre of pixel 0.5
    array([0.5, 0.5, 1. ])
    """
    fy = fx if fy is None else fy
    return np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]], np.float64)


def resized(img: np.ndarray, f: float) -> tuple[np.ndarray, np.ndarray]:
    """``img`` resized by about ``f`` (area averaging when shrinking) and the map from its pixel coordinates to the
    result's (:func:`level_matrix` of the factors that the rounded size really gives)."""
    h, w = img.shape[:2]
    if f == 1:
        return img, np.eye(3)
    size = (max(8, round(w * f)), max(8, round(h * f)))
    out = cv2.resize(img, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    return out, level_matrix(size[0] / w, size[1] / h)


def blurred_level(img: np.ndarray, f: float, blur: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`resized`, then a Gaussian blur of ``blur`` pixels of the result (0: none)."""
    out, m = resized(img, f)
    return (cv2.GaussianBlur(out, (0, 0), blur) if blur else out), m


def image_gradient(img: np.ndarray) -> np.ndarray:
    """``(2, H, W)`` central-difference gradient ``(d/dx, d/dy)`` of ``img`` ``(H, W)``, replicated at the border."""
    img = np.asarray(img, np.float32)
    k = np.array([[-0.5, 0.0, 0.5]], np.float32)
    gx = cv2.filter2D(img, cv2.CV_32F, k, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(img, cv2.CV_32F, k.T, borderType=cv2.BORDER_REPLICATE)
    return np.stack((gx, gy))


def edge_parameter(grad: np.ndarray, share: float = 0.5) -> float:
    """NGF's ``eta``: ``share`` of the mean gradient magnitude; gradients well below it count as flat (noise)."""
    return share * float(np.sqrt((grad * grad).sum(0)).mean()) + 1e-6


def _perturbation(p: torch.Tensor, model: str) -> torch.Tensor:
    """A 3x3 perturbation of the identity, in normalised infrared coordinates, from the parameters ``p``."""
    z, o = torch.zeros((), dtype=p.dtype), torch.ones((), dtype=p.dtype)
    if model == "translation":
        entries = [o, z, p[0], z, o, p[1], z, z, o]
    elif model == "affine":
        entries = [o + p[0], p[1], p[2], p[3], o + p[4], p[5], z, z, o]
    else:
        entries = [o + p[0], p[1], p[2], p[3], o + p[4], p[5], p[6], p[7], o]
    return torch.stack(entries).view(3, 3)


def _normalise_matrix(h: int, w: int) -> np.ndarray:
    """Pixel coordinates -> ``[-1, 1]`` (the pixel grid of ``grid_sample(align_corners=False)``)."""
    return np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], np.float64)


@dataclass(frozen=True)
class LevelPoints:
    """The infrared edge pixels of one pyramid level: ``xy`` ``(3, N)`` homogeneous pixel coordinates and ``n_ir``
    ``(N, 2)`` their normalised gradients."""

    xy: torch.Tensor
    n_ir: torch.Tensor


def edge_points(ir: np.ndarray, max_points: int = 20000, share: float = 0.5) -> LevelPoints:
    """The infrared pixels whose gradient exceeds NGF's ``eta`` (at most ``max_points``, evenly strided, at least
    3 pixels from the border), with their normalised gradients."""
    g = image_gradient(ir)
    eta = edge_parameter(g, share)
    mag2 = (g * g).sum(0)
    mask = mag2 > eta * eta
    mask[:3], mask[-3:], mask[:, :3], mask[:, -3:] = False, False, False, False
    ys, xs = np.nonzero(mask)
    if len(xs) > max_points:
        keep = np.linspace(0, len(xs) - 1, max_points).round().astype(np.int64)
        ys, xs = ys[keep], xs[keep]
    n = g[:, ys, xs] / np.sqrt(mag2[ys, xs] + eta * eta)
    xy = np.stack((xs, ys, np.ones_like(xs))).astype(np.float64)
    return LevelPoints(torch.from_numpy(xy), torch.from_numpy(n.T.astype(np.float64)))


class Agreement:
    """``A(warp)`` of one pyramid level, as a differentiable function of the perturbation parameters.

    Args:
        points: the level's infrared edge pixels (:func:`edge_points`).
        vis: the visible luminance of this level ``(h, w)``.
        warp: the warp at which the perturbation is zero (infrared -> visible pixels of this level).
        ir_hw: the infrared image's size at this level (for the normalised coordinates of the perturbation).
        model: ``translation``, ``affine`` or ``homography``.
        share: NGF's edge parameter as a share of the visible gradient's mean magnitude.
        perspective_prior: subtracted per ``0.01**2`` of the squared perspective terms that the refinement adds to
            ``warp``, in the infrared image's ``[-1, 1]`` coordinates (zero for the other models).
    """

    def __init__(self, points: LevelPoints, vis: np.ndarray, warp: np.ndarray, ir_hw: tuple[int, int],
                 model: str, share: float = 0.5, perspective_prior: float = 0.0) -> None:
        g = image_gradient(vis)
        self.eta = edge_parameter(g, share)
        self.grad = torch.from_numpy(g)[None]  # (1, 2, h, w)
        self.vis_hw = vis.shape
        self.points, self.model = points, model
        n_ir = _normalise_matrix(*ir_hw)
        self.to_norm_ir, self.from_norm_ir = torch.from_numpy(n_ir), torch.from_numpy(np.linalg.inv(n_ir))
        self.base = torch.from_numpy(np.asarray(warp, np.float64))
        self.perspective_prior = perspective_prior if model == "homography" else 0.0

    def warp_of(self, p: torch.Tensor) -> torch.Tensor:
        """The 3x3 warp (pixels of this level) for parameters ``p``."""
        return self.base @ self.from_norm_ir @ _perturbation(p, self.model) @ self.to_norm_ir

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        value = self.of_warp(self.warp_of(p))
        if self.perspective_prior:  # the perturbation's last row is (p6, p7, 1)
            value = value - self.perspective_prior * (p[6] ** 2 + p[7] ** 2) / 1e-4
        return value

    def of_warp(self, m: torch.Tensor) -> torch.Tensor:
        """The agreement at the 3x3 warp ``m``: mean squared dot product of the two normalised gradients over the
        infrared edge pixels (zero for those that land outside the visible image)."""
        g = m @ self.points.xy  # (3, N)
        u, v = g[0] / g[2], g[1] / g[2]
        h, w = self.vis_hw
        grid = torch.stack(((2 * u + 1) / w - 1, (2 * v + 1) / h - 1), -1)[None, None].float()
        gv = F.grid_sample(self.grad, grid, mode="bicubic", padding_mode="border", align_corners=False)[0, :, 0]
        gv = gv.double()
        # the gradient of the warped image is J^T grad V, J the warp's Jacobian at each point
        j00, j01 = (m[0, 0] - u * m[2, 0]) / g[2], (m[0, 1] - u * m[2, 1]) / g[2]
        j10, j11 = (m[1, 0] - v * m[2, 0]) / g[2], (m[1, 1] - v * m[2, 1]) / g[2]
        # (not divided by the warp's scale: the visible image of each level is already at about the infrared
        # image's scale, and a warp that shrinks the infrared frame onto one strong visible edge must lose)
        wx = j00 * gv[0] + j10 * gv[1]
        wy = j01 * gv[0] + j11 * gv[1]
        n = torch.sqrt(wx * wx + wy * wy + self.eta * self.eta)
        dot = (self.points.n_ir[:, 0] * wx + self.points.n_ir[:, 1] * wy) / n
        with torch.no_grad():
            inside = ((u >= 1) & (u <= w - 2) & (v >= 1) & (v <= h - 2)).double()
        # over all the points: one that leaves the visible image counts as no agreement, so that shrinking the
        # overlap onto a few well-matched edges does not pay
        return (dot * dot * inside).sum() / max(1, inside.numel())


def ngf_field(img: np.ndarray, share: float = 0.5) -> np.ndarray:
    """``(2, H, W)`` normalised gradient field of ``img`` ``(H, W)``."""
    g = image_gradient(img)
    eta = edge_parameter(g, share)
    return g / np.sqrt((g * g).sum(0) + eta * eta)


def _products(n: np.ndarray, cross: float) -> np.ndarray:
    """``(3, H, W)``: ``n_x^2``, ``cross * n_x n_y``, ``n_y^2`` (so that the sum over channels of the products of
    two such stacks is ``(n . m)^2``)."""
    return np.stack((n[0] * n[0], cross * n[0] * n[1], n[1] * n[1]))


def shift_search(ir: np.ndarray, canvas: np.ndarray, pad: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """The best shift of ``canvas`` against ``ir`` by the NGF agreement, searched over every shift at once.

    ``canvas`` is ``ir``'s size plus ``pad = (py, px)`` on each side. ``(n_ir(x) . n_c(x + t))^2`` expands into three
    channel products, so the agreement at every shift ``t`` is a sum of three cross-correlations (FFT).

    Returns:
        ``(agreement, (dx, dy))``: the mean agreement over the infrared edge energy and the shift such that infrared
        pixel ``x`` matches canvas pixel ``x + (px, py) + (dx, dy)``.
    """
    surface = shift_surface(ir, canvas, pad)
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
    return float(surface[iy, ix]), (int(ix) - pad[1], int(iy) - pad[0])


def shift_surface(ir: np.ndarray, canvas: np.ndarray, pad: tuple[int, int]) -> np.ndarray:
    """``(2 py + 1, 2 px + 1)``: the NGF agreement of ``ir`` with ``canvas`` (``ir``'s size plus ``pad = (py, px)``
    on each side) at every shift, per unit of infrared edge energy; the centre is no shift."""
    a = _products(ngf_field(ir), 2.0)
    b = _products(ngf_field(canvas), 1.0)
    size = canvas.shape
    corr = np.fft.irfft2((np.conj(np.fft.rfft2(a, s=size)) * np.fft.rfft2(b, s=size)).sum(0), s=size)
    py, px = pad  # corr[t] = sum_x a(x) b(x + t); shifts beyond the pad wrap around and are left out
    return corr[: 2 * py + 1, : 2 * px + 1] / (float((a[0] + a[2]).sum()) + 1e-12)


def peak_sharpness(surface: np.ndarray, exclude: int) -> float:
    """How far the centre of ``surface`` stands above the rest, in standard deviations of the rest (the
    peak-to-sidelobe ratio), leaving out ``exclude`` pixels around the centre: a registered pair has one clear
    peak there, an unrelated pair does not.

    >>> s = np.zeros((21, 21)); s[::2, ::2] = 1.0; s[10, 10] = 5.0
    >>> round(peak_sharpness(s, 2), 2)
    10.67
    """
    cy, cx = surface.shape[0] // 2, surface.shape[1] // 2
    rest = np.ones(surface.shape, bool)
    rest[max(0, cy - exclude): cy + exclude + 1, max(0, cx - exclude): cx + exclude + 1] = False
    side = surface[rest]
    return float((surface[cy, cx] - side.mean()) / (side.std() + 1e-12))


def refine_level(agreement: Agreement, iterations: int) -> tuple[np.ndarray, float]:
    """L-BFGS ascent of ``agreement`` from its base warp; returns the warp and the agreement there."""
    p = torch.zeros(N_PARAMS[agreement.model], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([p], lr=1, max_iter=iterations, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -agreement(p)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        if not torch.isfinite(p).all():
            p.zero_()
        return agreement.warp_of(p).numpy(), float(agreement(p))


__all__ = ["Agreement", "LevelPoints", "N_PARAMS", "blurred_level", "edge_parameter", "edge_points", "image_gradient",
           "level_matrix", "ngf_field", "peak_sharpness", "refine_level", "resized", "shift_search", "shift_surface"]
