"""A second camera of a rig, simulated: random warps of an aligned pair's visible image, as a visible camera beside
the infrared one would see the scene (what :func:`cldyn.data.align.align` must undo), and the corner error of a
recovered warp. Used by ``cldyn bench align`` and ``cldyn demo --align``."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class WarpRange:
    """The random transforms of the benchmark (the visible camera against the infrared one)."""

    shift: float = 0.08  # of the frame, each axis
    rotation_deg: float = 5.0
    scale: tuple[float, float] = (0.9, 1.1)
    shear: float = 0.03
    perspective: float = 2e-5  # per infrared pixel at 640 pixels wide (scaled with the width): 1.3% across it
    resolution: float = 2.0  # visible pixels per infrared pixel before the scale above


def _corners(hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    return np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], np.float64).T


def random_warp(rng: np.random.Generator, ir_hw: tuple[int, int], r: WarpRange = WarpRange()
                ) -> tuple[np.ndarray, tuple[int, int]]:
    """A random 3x3 warp from infrared pixels to the pixels of a visible camera, and that camera's image size
    ``(h, w)``: the warped infrared frame plus a margin of ``r.shift`` on each side, within which the frame is
    shifted at random."""
    h, w = ir_hw
    c = np.array([[1, 0, -(w - 1) / 2], [0, 1, -(h - 1) / 2], [0, 0, 1]], np.float64)  # about the centre
    a = np.deg2rad(rng.uniform(-r.rotation_deg, r.rotation_deg))
    s = rng.uniform(*r.scale) * r.resolution
    sh = rng.uniform(-r.shear, r.shear)
    m = np.eye(3)
    m[:2, :2] = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.array([[1, sh], [0, 1]])
    p = np.eye(3)
    p[2, :2] = rng.uniform(-r.perspective, r.perspective, 2) * 640 / w / s
    warp = p @ m @ c
    xy = warp @ _corners(ir_hw)
    xy = xy[:2] / xy[2]
    size = xy.max(1) - xy.min(1)
    canvas = np.ceil(size * (1 + 2 * r.shift)).astype(int)
    offset = (canvas - 1) / 2 - (xy.max(1) + xy.min(1)) / 2 + rng.uniform(-r.shift, r.shift, 2) * size
    return np.array([[1, 0, offset[0]], [0, 1, offset[1]], [0, 0, 1]]) @ warp, (int(canvas[1]), int(canvas[0]))


def warped_visible(vis: np.ndarray, warp: np.ndarray, canvas_hw: tuple[int, int]) -> np.ndarray:
    """The pair's visible image as the camera of ``warp`` (infrared -> its pixels) sees it; beyond the infrared
    field of view the scene is continued by reflection (no artificial black edge for registration to latch onto)."""
    return cv2.warpPerspective(vis, warp, (canvas_hw[1], canvas_hw[0]), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)


def corner_error(estimated: np.ndarray, true: np.ndarray, ir_hw: tuple[int, int]) -> float:
    """Mean distance, in infrared pixels, between the infrared frame's corners and where ``true^-1 @ estimated``
    puts them (0 for a perfect registration).

    >>> corner_error(np.eye(3), np.eye(3), (10, 20))
    0.0
    >>> corner_error(np.array([[1, 0, 3], [0, 1, 4], [0, 0, 1.0]]), np.eye(3), (10, 20))
    5.0
    """
    corners = _corners(ir_hw)
    back = np.linalg.inv(true) @ estimated @ corners
    return float(np.linalg.norm(back[:2] / back[2] - corners[:2], axis=0).mean())


__all__ = ["WarpRange", "corner_error", "random_warp", "warped_visible"]
