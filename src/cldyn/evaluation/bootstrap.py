"""Is one image source better than another for a task network? A paired bootstrap over the evaluated images.

Two sources (e.g. the fusion customised for detection and the one customised for segmentation) are scored by the same
task network on the same images. Resampling the images with replacement, the same draw for both sources, gives the
spread of the metric's difference that comes from which images happen to be in the set: a difference inside that
spread is not evidence that either source is better (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993,
ch. 13, percentile interval).

The metric is recomputed on each resample as a whole (mIoU from the summed confusion matrices, max F over the mean
per-image F curve, mAP from COCOeval), not averaged per image: that is how the task is scored. Segmentation mIoU and
saliency max F come from per-image parts computed once, and detection mAP from COCOeval's per-image matching done once
(each adapter's :meth:`~cldyn.tasks.base.TaskAdapter.metric_resampler`); any other metric reruns the adapter's
``evaluate`` on the resampled predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# The metric each task is compared on: its primary metric.
COMPARED_METRIC: dict[str, str] = {"detection": "map50_95", "segmentation": "miou", "saliency": "max_f"}

Scorer = Callable[[np.ndarray], float]


def metric_scorer(adapter, predictions: Sequence[Any], targets: Sequence[Any], metric: str) -> Scorer:
    """``score(index) -> float``: ``metric`` of the task network ``adapter`` on the predictions and targets at the
    integer positions ``index`` (repeats allowed): the adapter's own
    :meth:`~cldyn.tasks.base.TaskAdapter.metric_resampler` where it has one, else its ``evaluate`` on the resampled
    lists."""
    fast = adapter.metric_resampler(predictions, targets, metric)
    if fast is not None:
        return fast

    def score(index: np.ndarray) -> float:
        value = adapter.evaluate([predictions[i] for i in index], [targets[i] for i in index])
        if metric not in value:
            raise KeyError(f"{adapter.task} metrics have no {metric!r} (they have {', '.join(map(str, value))})")
        return float(value[metric])

    return score


def paired_bootstrap(score_a: Scorer, score_b: Scorer, n: int, resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, Any]:
    """The difference ``score_a - score_b`` on ``n`` images, and its bootstrap distribution: ``resamples`` draws of
    ``n`` image positions with replacement, the same draw for both scorers.

    Returns ``a``, ``b``, ``difference`` (on all images), ``ci`` (the percentile interval at ``level``), ``std`` (of
    the resampled differences), ``p_a_not_better`` (share of resamples with ``a <= b``), ``resamples``, ``level``.

    Example:
        >>> a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 2.0, 3.0, 4.0])
        >>> r = paired_bootstrap(lambda i: a[i].mean(), lambda i: b[i].mean(), 4, resamples=200)
        >>> r["difference"], r["ci"][0] >= 0.0
        (0.25, True)
    """
    if n < 1 or resamples < 1:
        raise ValueError(f"paired_bootstrap needs n >= 1 and resamples >= 1, got n={n}, resamples={resamples}")
    everything = np.arange(n)
    a, b = float(score_a(everything)), float(score_b(everything))
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    diffs = np.array([score_a(d) - score_b(d) for d in draws])
    tail = (1 - level) / 2
    lo, hi = np.quantile(diffs, [tail, 1 - tail])
    return {"a": a, "b": b, "difference": a - b, "ci": [float(lo), float(hi)], "std": float(diffs.std()),
            "p_a_not_better": float((diffs <= 0).mean()), "resamples": resamples, "level": level}


__all__ = ["COMPARED_METRIC", "metric_scorer", "paired_bootstrap"]
