"""How far to trust a registration (:mod:`cldyn.data.confidence`): the local contrast against an independent
reference."""

import numpy as np
from scipy.ndimage import gaussian_filter

from cldyn.data.confidence import local_contrast


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
