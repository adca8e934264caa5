"""What the experiment's tables show: their columns, and mean ± std over runs."""

from __future__ import annotations

import math

import numpy as np

FUSION_COLUMNS = ("en", "sd", "sf", "ag", "mi", "scd", "vif", "qabf", "nabf", "ssim", "qcb", "qcv")


TASK_COLUMNS = {"detection": ("map50", "map50_95"), "segmentation": ("miou",),
                "saliency": ("mae", "max_f", "s_measure", "mean_e")}

SECOND_DETECTOR_ROW = "cldyn customised with this detector (never seen in training)"


def customised_row(for_task: str, scored_by: str) -> str:
    """The task-table row of CLDyN customised for ``for_task``, in the table of task network ``scored_by``."""
    return f"cldyn customised for {for_task}" + (" (this task)" if for_task == scored_by else "")


def ablation_row(name: str) -> str:
    """The task-table row of RSC runs trained with ablation switch ``name``."""
    return f"ablation: {name}"


def percent_change(value: float, base: float) -> float:
    """``100 (value - base) / |base|``: a metric's change against VFN in percent; NaN where undefined."""
    if math.isnan(value) or math.isnan(base) or base == 0:
        return float("nan")
    return 100 * (value - base) / abs(base)


def mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    return float(np.mean(vals)), float(np.std(vals)) if len(vals) > 1 else 0.0
