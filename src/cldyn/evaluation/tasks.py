"""A task network scored on one image source: visible, infrared, VFN-fused, a folder of fused images, or CLDyN
customised for the network (``cldyn eval-task``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cldyn.data.task_bank import load_task_bank
from cldyn.errors import CldynError
from cldyn.evaluation.bootstrap import COMPARED_METRIC, metric_scorer, paired_bootstrap
from cldyn.inference.sources import image_source
from cldyn.model.rsc import CLDyN
from cldyn.tasks import TaskAdapter, load_task_for
from cldyn.tasks.evaluation import predict_bank, predict_cldyn
from cldyn.weights import load_rsc_or_shipped, load_vfn_or_shipped


def _predictions(adapter: TaskAdapter, data: str | Path, split: str, source: str, vfn_weights, rsc_weights,
                 log: Callable[[str], None], progress: bool, labels: str | None
                 ) -> tuple[list[str], list[Any], list[Any]]:
    """``(names, predictions, targets)`` of the task network on one image source; the labels are those of the
    adapter's own layout (``adapter.task``, also for a ``module:Class`` network) and classes."""
    model = None
    if source == "cldyn":  # weights first: a bad file is refused before any data is read
        vfn = load_vfn_or_shipped(vfn_weights)
        model = CLDyN(vfn, load_rsc_or_shipped(rsc_weights, vfn))
    bank = load_task_bank(adapter.task, data, split, image_source("pair" if model else source, vfn_weights),
                          adapter.config, log, labels=labels, classes=adapter.label_classes)
    preds = predict_cldyn(model, adapter, bank) if model else predict_bank(adapter, bank, progress=progress)
    return [it.name for it in bank.items], preds, [it.label for it in bank.items]


def evaluate_task(task: str, data: str | Path, split: str = "val", source: str = "vfn",
                  weights: str | Path | None = None, vfn_weights: str | Path | None = None,
                  rsc_weights: str | Path | None = None, log: Callable[[str], None] = print,
                  progress: bool = False, against: str | None = None, metric: str | None = None,
                  resamples: int = 1000, seed: int = 0, labels: str | None = None,
                  adapter: TaskAdapter | None = None) -> dict[str, Any]:
    """``{"task", "source", "n", "metrics"}`` for the task network (``weights``, default: shipped) on ``source``.

    ``source``: an :func:`~cldyn.inference.sources.image_source` (``visible``, ``infrared``, ``average``, ``max``,
    ``vfn``, a folder of fused images) or ``cldyn``, which fuses each pair with the closed loop (base fusion -> the
    network's features -> compensated fusion) using ``rsc_weights`` (default: shipped) on the VFN ``vfn_weights``
    (default: shipped). ``labels`` picks a label variant (e.g. ``visible`` boxes); ``adapter``, a loaded network,
    stands in for ``task`` and ``weights``.

    ``against``: a second source (same choices) scored on the same images; the result then also holds
    ``against_metrics`` and ``comparison``, the :func:`~cldyn.evaluation.bootstrap.paired_bootstrap` of ``metric``
    (default: the task's :data:`~cldyn.evaluation.bootstrap.COMPARED_METRIC`), source minus ``against``, over
    ``resamples`` resamples of the images drawn with ``seed``.
    """
    if resamples < 1:
        raise CldynError(f"resamples must be at least 1, got {resamples}")
    adapter = adapter or load_task_for(task, weights, weights_flag="--weights")
    if against is not None:  # settled before any scoring: a missing metric must not cost a pass over the data
        metric = metric or COMPARED_METRIC.get(adapter.task)
        if metric is None:
            raise CldynError(f"{task}: no default metric to compare {source} and {against} on; name one with "
                             "--metric")
    names, preds, targets = _predictions(adapter, data, split, source, vfn_weights, rsc_weights, log, progress, labels)
    result: dict[str, Any] = {"task": task, "source": source, "n": len(names),
                              "metrics": adapter.evaluate(preds, targets)}
    if against is None:
        return result
    if not isinstance(result["metrics"].get(metric), (int, float)):
        raise CldynError(f"{task}: no metric {metric!r} to compare on (its metrics: "
                         f"{', '.join(k for k, v in result['metrics'].items() if isinstance(v, (int, float)))})")
    other_names, other_preds, _ = _predictions(adapter, data, split, against, vfn_weights, rsc_weights, log,
                                               progress, labels)
    if other_names != names:
        raise CldynError(f"--against {against}: scores {len(other_names)} images, {source} {len(names)}: "
                         "the two sources must cover the same pairs")
    comparison = paired_bootstrap(metric_scorer(adapter, preds, targets, metric),
                                  metric_scorer(adapter, other_preds, targets, metric), len(names), resamples, seed)
    return {**result, "against": against, "against_metrics": adapter.evaluate(other_preds, targets),
            "comparison": {"metric": metric, **comparison}}


def format_comparison(result: dict[str, Any]) -> str:
    """One line: the compared metric on both sources, the difference and its bootstrap interval."""
    c = result["comparison"]
    return (f"{result['task']} {c['metric']}: {c['a']:.4f} ({result['source']}) vs {c['b']:.4f} ({result['against']}),"
            f" difference {c['difference']:+.4f}, {100 * c['level']:.0f}% interval [{c['ci'][0]:+.4f}, "
            f"{c['ci'][1]:+.4f}] over {result['n']} images ({c['resamples']} resamples; not better in "
            f"{100 * c['p_a_not_better']:.1f}%)")
