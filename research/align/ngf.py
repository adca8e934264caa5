"""Registration by normalised gradient fields (NGF; Haber & Modersitzki, 2006), a probe against the edge-map ECC of
``align.py``.

The NGF of an image is its gradient divided by ``sqrt(|g|^2 + eta^2)``: unit vectors on edges, near zero in flat
regions. Two cameras that see the same edge give parallel or anti-parallel fields whatever their intensities, so
``mean((n_ir . n_vis)^2)`` over the overlap is largest at the right warp. It is maximised over the warp with L-BFGS,
coarse to fine, in PyTorch (the warp is differentiable through ``grid_sample``).

Pixel convention: OpenCV's (pixel ``i`` has its centre at ``i``). Warps map infrared pixels to visible pixels.

    python research/align/ngf.py drift ../shared/data/msrs val 20 affine   # how far NGF moves the published pairs
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def level_matrix(f: float) -> np.ndarray:
    """Pixel coordinates of an image resized by ``f`` (``cv2.INTER_AREA``) from the original's: centres move too."""
    o = 0.5 * f - 0.5
    return np.array([[f, 0, o], [0, f, o], [0, 0, 1]], np.float64)


def rescale_warp(warp: np.ndarray, f_ir: float, f_vis: float) -> np.ndarray:
    """``warp`` (infrared -> visible pixels) for the infrared image resized by ``f_ir`` and the visible by ``f_vis``."""
    return level_matrix(f_vis) @ warp @ np.linalg.inv(level_matrix(f_ir))


def ngf_field(img: torch.Tensor, eta: float) -> torch.Tensor:
    """``(1, 2, H, W)`` normalised gradient field of ``img`` ``(1, 1, H, W)`` (central differences)."""
    gx = F.pad(img[..., :, 2:] - img[..., :, :-2], (1, 1, 0, 0), mode="replicate") / 2
    gy = F.pad(img[..., 2:, :] - img[..., :-2, :], (0, 0, 1, 1), mode="replicate") / 2
    g = torch.cat((gx, gy), 1)
    return g / torch.sqrt((g * g).sum(1, keepdim=True) + eta * eta)


def eta_of(img: np.ndarray) -> float:
    """The NGF edge parameter: a share of the image's mean gradient magnitude (noise below it counts as flat)."""
    gy, gx = np.gradient(img.astype(np.float32))
    return float(0.5 * np.sqrt(gx * gx + gy * gy).mean()) + 1e-6


N_PARAMS = {"translation": 2, "affine": 6, "homography": 8}


def _perturbation(p: torch.Tensor, model: str) -> torch.Tensor:
    """A 3x3 perturbation in normalised infrared coordinates from the parameters ``p``."""
    z = torch.zeros((), dtype=p.dtype)
    o = torch.ones((), dtype=p.dtype)
    if model == "translation":
        rows = [o, z, p[0], z, o, p[1], z, z, o]
    elif model == "affine":
        rows = [o + p[0], p[1], p[2], p[3], o + p[4], p[5], z, z, o]
    else:
        rows = [o + p[0], p[1], p[2], p[3], o + p[4], p[5], p[6], p[7], o]
    return torch.stack(rows).view(3, 3)


def _norm_matrix(h: int, w: int) -> np.ndarray:
    """Pixel (centre at i) -> normalised [-1, 1] coordinates of ``grid_sample(align_corners=False)``."""
    return np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], np.float64)


def refine(ir: np.ndarray, vis: np.ndarray, warp: np.ndarray, model: str, iters: int = 40,
           eta_ir: float | None = None, eta_vis: float | None = None) -> tuple[np.ndarray, float]:
    """One level: ``warp`` (infrared -> visible pixels) refined to maximise the mean squared NGF agreement; returns
    the warp and the final agreement."""
    h, w = ir.shape
    vh, vw = vis.shape
    t_ir = torch.from_numpy(np.ascontiguousarray(ir, np.float32))[None, None]
    t_vis = torch.from_numpy(np.ascontiguousarray(vis, np.float32))[None, None]
    n_ir = ngf_field(t_ir, eta_ir or eta_of(ir))
    ev = eta_vis or eta_of(vis)
    ni = _norm_matrix(h, w)
    # grid(u) = N_vis @ warp @ N_ir^-1 @ A(p) @ u, u the normalised infrared coordinates
    left = torch.from_numpy(_norm_matrix(vh, vw) @ warp @ np.linalg.inv(ni))
    ys, xs = torch.meshgrid(torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=torch.float64),
                            torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=torch.float64), indexing="ij")
    u = torch.stack((xs, ys, torch.ones_like(xs)), 0).view(3, -1)
    p = torch.zeros(N_PARAMS[model], dtype=torch.float64, requires_grad=True)
    ones = torch.ones_like(t_vis)

    def agreement() -> torch.Tensor:
        m = left @ _perturbation(p, model)
        g = m @ u
        grid = (g[:2] / g[2:]).T.reshape(1, h, w, 2).float()
        warped = F.grid_sample(t_vis, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        valid = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        valid = (valid > 0.999).float()
        valid = valid * F.max_pool2d(1 - valid, 3, 1, 1).lt(0.5).float()  # off the border's edge
        dot = (n_ir * ngf_field(warped, ev)).sum(1, keepdim=True)
        return (dot * dot * valid).sum() / valid.sum().clamp_min(1.0)

    opt = torch.optim.LBFGS([p], lr=1, max_iter=iters, line_search_fn="strong_wolfe", tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -agreement()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        a = float(agreement())
        m = (left @ _perturbation(p, model)).numpy()
    out = _norm_matrix(vh, vw)
    return np.linalg.inv(out) @ m @ ni, a


def register(ir: np.ndarray, vis: np.ndarray, warp: np.ndarray, model: str, levels: int = 3, iters: int = 40,
             blur: float = 1.0) -> tuple[np.ndarray, float]:
    """Coarse to fine NGF refinement of ``warp`` over ``levels`` halvings (each image blurred by ``blur`` pixels)."""
    a = 0.0
    for level in range(levels - 1, -1, -1):
        f = 0.5 ** level
        i = cv2.resize(ir, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if level else ir
        v = cv2.resize(vis, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if level else vis
        if blur:
            i, v = cv2.GaussianBlur(i, (0, 0), blur), cv2.GaussianBlur(v, (0, 0), blur)
        lw = rescale_warp(warp, f, f)
        lw, a = refine(i, v, lw, model, iters)
        warp = rescale_warp(lw, 1 / f, 1 / f)
    return warp, a


def _drift(root: str, split: str, n: int, model: str) -> None:
    """How far NGF moves the published aligned pairs from the identity (corner displacement, pixels)."""
    import time
    from pathlib import Path

    from cldyn.data.io import luma, read_pair, to_single_channel
    from cldyn.data.pairs import discover_pairs

    torch.set_num_threads(1)
    pairs = discover_pairs([Path(root)], split)[0][:n]
    moves = []
    for pair in pairs:
        ir, vis = read_pair(pair.ir, pair.vis)
        ir, y = to_single_channel(ir).astype(np.float32), luma(vis.pixels).astype(np.float32)
        t0 = time.perf_counter()
        warp, a = register(ir, y, np.eye(3), model)
        h, w = ir.shape
        c = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64).T
        m = warp @ c
        d = float(np.linalg.norm(m[:2] / m[2] - c[:2], axis=0).mean())
        moves.append(d)
        print(f"{pair.name}: moved {d:.2f} px, agreement {a:.3f}, {time.perf_counter() - t0:.2f} s", flush=True)
    print(f"median {np.median(moves):.2f} px, 95th percentile {np.percentile(moves, 95):.2f} px")


if __name__ == "__main__":
    if sys.argv[1] == "drift":
        _drift(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
