"""How far to trust a registration (:mod:`cldyn.data.confidence`): the local contrast against an independent
reference."""

import numpy as np
from scipy.ndimage import gaussian_filter

from cldyn.data.confidence import local_contrast, pair_local_contrast


def test_local_contrast_is_the_local_z_score():
    rng = np.random.default_rng(0)
    img = gaussian_filter(rng.random((64, 80)), 1.5).astype(np.float32)
    sigma = 3.0
    # independent reference: scipy's Gaussian (mirror border, as OpenCV's default; radius 4 sigma, as OpenCV's)
    d = img - gaussian_filter(img, sigma, mode="mirror", truncate=4.0)
    ref = d / (np.sqrt(gaussian_filter(d * d, sigma, mode="mirror", truncate=4.0)) + 0.02 * img.std() + 1e-4)
    np.testing.assert_allclose(local_contrast(img, sigma), ref, atol=2e-3)
    # an edge counts by its contrast with its surroundings, not by its step in grey levels (up to the 1e-4 floor)
    np.testing.assert_allclose(local_contrast(0.1 * img + 0.3, sigma), local_contrast(img, sigma), rtol=0.05,
                               atol=2e-3)


def test_the_pair_window_covers_the_same_part_of_the_scene_in_both_images():
    rng = np.random.default_rng(1)
    ir = gaussian_filter(rng.random((240, 320)), 1.0).astype(np.float32)
    vis = gaussian_filter(rng.random((480, 640)), 1.0).astype(np.float32)  # twice the resolution
    lir, lvis = pair_local_contrast(ir, vis, 8.0)
    # 8 px of a 640-px frame: 4 px on this 320-px infrared image, 8 px on the visible image of twice its size
    np.testing.assert_array_equal(lir, local_contrast(ir, 4.0))
    np.testing.assert_allclose(lvis, local_contrast(vis, 8.0), atol=1e-6)
