"""What the experiment's tables show: their columns, and mean ± std over runs."""

from __future__ import annotations

import math

import numpy as np

FUSION_COLUMNS = ("en", "sd", "sf", "ag", "mi", "scd", "vif", "qabf", "nabf", "ssim", "qcb", "qcv")


TASK_COLUMNS = {"detection": ("map50", "map50_95"), "segmentation": ("miou",),
                "saliency": ("mae", "max_f", "s_measure", "mean_e")}


def mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    return float(np.mean(vals)), float(np.std(vals)) if len(vals) > 1 else 0.0
