"""Noise in flat regions: the luminance standard deviation of a fused image in a window where the scene is flat
(e.g. a clear sky), against the visible image's in the same window. Banding or sensor noise copied from the
infrared image shows as a ratio well above 1."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cldyn.data.io import luma

# RoadScene FLIR_04514 (the demo pair): clear sky between the tree on the left and the lamp post, rows x columns.
ROADSCENE_SKY = (slice(5, 45), slice(160, 300))


@dataclass(frozen=True)
class WindowStd:
    """Luminance standard deviations (8-bit grey levels) in one window."""

    fused: float
    visible: float
    infrared: float

    @property
    def ratio(self) -> float:
        """fused / visible: 1 means as smooth as the visible image."""
        return self.fused / self.visible


def _luma255(pixels: np.ndarray) -> np.ndarray:
    return luma(np.asarray(pixels, dtype=np.float32)).astype(np.float64) * 255.0


def window_std(fused: np.ndarray, visible: np.ndarray, infrared: np.ndarray,
               window: tuple[slice, slice] = ROADSCENE_SKY) -> WindowStd:
    """Standard deviation of BT.601 luminance in ``window`` for images in [0, 1], ``(H, W)`` or ``(H, W, 3)`` RGB.

    Example:
        >>> vis = 0.5 + 0.01 * np.random.default_rng(0).standard_normal((50, 320))
        >>> window_std(np.full((50, 320), 0.5), vis, vis).ratio
        0.0
    """
    return WindowStd(*(float(_luma255(x)[window].std()) for x in (fused, visible, infrared)))
