"""No-reference fusion-quality metrics, written from their published definitions.

Every metric takes float arrays ``(H, W)`` on the 0..255 scale (as fusion evaluators read 8-bit images) and returns
a Python float. Two-source metrics take ``(fused, a, b)`` with ``a`` the infrared and ``b`` the visible image. The
reference for each is named in its docstring; where the public CDDFuse evaluator (``utils/Evaluator.py`` of
MMIF-CDDFuse, the most copied in the field) deviates from the paper's definition, both are available and the
``variant`` argument says which is computed. Direction: ``higher`` or ``lower`` is better, in :data:`DIRECTION`.

Filtering runs in float64 with OpenCV (no per-pixel Python loops); results agree with SciPy/scikit-image based
implementations to about 1e-10 relative.
"""

from __future__ import annotations

from cldyn.evaluation.metrics.edges import nabf, qabf
from cldyn.evaluation.metrics.information import correlation_coefficient, fmi_pixel, mutual_information, psnr, scd
from cldyn.evaluation.metrics.perceptual import q_chen_blum, q_chen_varshney, q_cvejic
from cldyn.evaluation.metrics.statistics import average_gradient, entropy, spatial_frequency, standard_deviation
from cldyn.evaluation.metrics.structural import ms_ssim, ms_ssim_sum, ssim, ssim_sum, vif, vif_pixel

DIRECTION: dict[str, str] = {
    "en": "higher", "sd": "higher", "sf": "higher", "ag": "higher", "mi": "higher", "fmi": "higher",
    "scd": "higher", "vif": "higher", "qabf": "higher", "nabf": "lower", "ssim": "higher", "ms_ssim": "higher",
    "cc": "higher", "psnr": "higher", "qcb": "higher", "qcv": "lower", "qc": "higher",
}

__all__ = [
    "DIRECTION", "entropy", "standard_deviation", "spatial_frequency", "average_gradient", "mutual_information",
    "correlation_coefficient", "scd", "psnr", "fmi_pixel", "vif_pixel", "vif", "ssim", "ssim_sum", "ms_ssim",
    "ms_ssim_sum", "qabf", "nabf", "q_cvejic", "q_chen_blum", "q_chen_varshney",
]
