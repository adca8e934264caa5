"""Flat-window noise: hand-computed standard deviations of banded and flat images."""

import numpy as np
import pytest

from cldyn.evaluation.flatness import ROADSCENE_SKY, window_std


def test_banding_and_flat_windows_hand_computed():
    # Rows alternating 0.50 / 0.52: std = 0.01 on a [0, 1] scale = 2.55 grey levels; a flat image has 0.
    banded = np.full((60, 320), 0.5)
    banded[1::2] = 0.52
    flat = np.full((60, 320), 0.4)
    rgb_banded = np.repeat(banded[..., None], 3, axis=2)  # a gray RGB image has the same luminance
    s = window_std(rgb_banded, banded, flat)
    assert s.fused == pytest.approx(2.55, abs=1e-3) and s.visible == pytest.approx(2.55, abs=1e-3)
    assert s.infrared == 0.0 and s.ratio == pytest.approx(1.0, abs=1e-4)
    assert window_std(flat, banded, banded, window=(slice(0, 60, 2), slice(None))).visible == 0.0  # even rows only
    assert (slice(5, 45), slice(160, 300)) == ROADSCENE_SKY
