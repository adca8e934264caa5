"""The claims of task-customised fusion (customisations differ, each task gains, the loop beats its ablation, fusion
quality holds), each measured on a ``cldyn experiment`` result.

Every verdict is computed from the experiment's own tables, so the README's claims and the report cannot drift apart:

- ``tasks``: ``{task network: {row: {metric: [mean, std, runs]}}}`` (:meth:`Experiment.task_table`);
- ``fusion``: ``{method group: {metric: (mean, std, runs)}}`` (:func:`~cldyn.evaluation.experiment_report.fusion_rows`);
- ``distances``: per RSC run, ``{"a vs b": mean |difference| in 8-bit levels}`` between the task customisations;
- ``inspection``: per RSC run, :func:`~cldyn.evaluation.inspect_rsc.inspect_rsc`'s result;
- ``unseen``: fusion rows, as ``fusion``, on pairs from a camera no network saw (``cldyn experiment --unseen``).

A verdict is ``met`` True or False, or None where it cannot be judged (one run gives no std between seeds). "By more
than the std" uses the population std over the seeds (:func:`~cldyn.evaluation.tables.mean_std`), and for a
difference between two rows the larger of their two stds.

Example:
    >>> tasks = {"segmentation": {"vfn": {"miou": [0.30, 0.0, 1]},
    ...                           "cldyn customised for segmentation (this task)": {"miou": [0.32, 0.005, 3]}}}
    >>> v = over_vfn(tasks)
    >>> v.met, v.measured
    (True, 'segmentation +0.0200 (std 0.0050)')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cldyn.evaluation.tables import SECOND_DETECTOR_ROW, ablation_row, customised_row, percent_change

#: The metric each task is judged on: which for saliency is max F-beta (checkpoint selection uses
#: S-measure: :data:`cldyn.tasks.evaluation.PRIMARY_METRIC`).
JUDGED_ON = {"detection": "map50_95", "segmentation": "miou", "saliency": "max_f"}
#: Fusion quality against VFN, in percent: these may fall by at most 3% ...
QUALITY_FLOOR = {"mi": -3.0, "vif": -3.0, "qabf": -3.0, "ssim": -3.0}
#: ... and these (lower is better) may rise by at most 10%.
QUALITY_CEILING = {"qcv": 10.0, "nabf": 10.0}
#: On a camera no network saw, these may fall by at most 5% (the artefact check).
UNSEEN_FLOOR = {"vif": -5.0, "ssim": -5.0, "qabf": -5.0}
#: Smallest mean |difference| between two task customisations, in 8-bit levels.
MIN_DISTANCE = 1.0
#: Largest share of pairs whose kernel choices agree across the tasks, per A2SI block.
MAX_AGREEMENT = 0.5


@dataclass(frozen=True)
class Verdict:
    """One acceptance criterion: what was measured, the target, and whether it is met (None: not measurable)."""

    criterion: str
    measured: str
    target: str
    met: bool | None


def _tasks(tasks: Mapping[str, Any]) -> list[str]:
    return [t for t in JUDGED_ON if t in tasks]


def _cell(tasks: Mapping[str, Any], task: str, row: str) -> tuple[float, float, int] | None:
    cell = tasks.get(task, {}).get(row, {}).get(JUDGED_ON[task])
    if cell is None or cell[2] == 0 or math.isnan(cell[0]):
        return None
    return float(cell[0]), float(cell[1]), int(cell[2])


def distances_differ(distances: Sequence[Mapping[str, float]]) -> Verdict:
    """Mean |difference| between each pair of task customisations ≥ :data:`MIN_DISTANCE` (mean over the runs)."""
    target = f"every pair ≥ {MIN_DISTANCE:.1f} grey level"
    if not distances:
        return Verdict("customisations differ", "not measured", target, None)
    means = {k: (float(np.mean([d[k] for d in distances])), float(np.std([d[k] for d in distances])))
             for k in distances[0] if not k.endswith(" vs VFN")}  # between tasks only, not each against VFN
    text = "; ".join(f"{k} {m:.3f}" + (f" ± {s:.3f}" if len(distances) > 1 else "") for k, (m, s) in means.items())
    return Verdict("customisations differ", text, target, all(m >= MIN_DISTANCE for m, _ in means.values()))


def kernel_choices_differ(inspection: Sequence[Mapping[str, Any]]) -> Verdict:
    """Per A2SI block, the share of pairs whose kernel choices agree across tasks < :data:`MAX_AGREEMENT` (mean over
    the runs; every block must meet it)."""
    target = f"< {MAX_AGREEMENT:.0%} in every block"
    if not inspection:
        return Verdict("kernel choices differ", "not measured", target, None)
    shares = np.array([[b["choices_agree_share"] for b in r["blocks"]] for r in inspection])  # runs x blocks
    per_block = shares.mean(0)
    text = f"mean over blocks {per_block.mean():.0%}, worst block {per_block.max():.0%} ({len(inspection)} runs)"
    return Verdict("kernel choices differ", text, target, bool((per_block < MAX_AGREEMENT).all()))


def over_vfn(tasks: Mapping[str, Any]) -> Verdict:
    """Each task's primary metric, customised for that task, above VFN by more than the seeds' std (all tasks)."""
    parts, met = [], []
    for t in _tasks(tasks):
        own, vfn = _cell(tasks, t, customised_row(t, t)), _cell(tasks, t, "vfn")
        if own is None or vfn is None:
            parts.append(f"{t} n/a")
            met.append(None)
            continue
        gain = own[0] - vfn[0]
        parts.append(f"{t} {gain:+.4f} (std {own[1]:.4f})")
        met.append(gain > own[1] if own[2] > 1 else None)
    return Verdict("each task improves over VFN", "; ".join(parts), "gain > seeds' std on all three tasks",
                   None if not met or None in met else all(met))


def own_customisation_best(tasks: Mapping[str, Any]) -> Verdict:
    """Cross-task table: on ≥ 2 tasks, the fusion customised for that task scores best among the customisations."""
    names = _tasks(tasks)
    parts, wins = [], 0
    for t in names:
        scores = {o: c[0] for o in names if (c := _cell(tasks, t, customised_row(o, t))) is not None}
        if t not in scores:
            parts.append(f"{t} n/a")
            continue
        best = max(scores, key=scores.get)
        wins += best == t
        parts.append(f"{t}: best is {best}")
    return Verdict("own customisation scores best", f"{wins}/{len(names)} ({'; '.join(parts)})", "≥ 2 of 3 tasks",
                   wins >= 2 if names else None)


def beats_ablation(tasks: Mapping[str, Any], ablation: str = "no_closed_loop") -> Verdict:
    """The full method above the ablation's row by more than the larger std, on ≥ 2 tasks."""
    names = _tasks(tasks)
    parts, wins, judged = [], 0, bool(names)
    for t in names:
        own, abl = _cell(tasks, t, customised_row(t, t)), _cell(tasks, t, ablation_row(ablation))
        if own is None or abl is None:
            parts.append(f"{t} n/a")
            judged = False
            continue
        gap, std = own[0] - abl[0], max(own[1], abl[1])
        wins += gap > std
        judged &= own[2] > 1 and abl[2] > 1
        parts.append(f"{t} {gap:+.4f} (std {std:.4f})")
    return Verdict(f"full method beats {ablation}", f"{wins}/{len(names)} ({'; '.join(parts)})",
                   "≥ 2 of 3 tasks by > std", wins >= 2 if judged else None)


def _quality(criterion: str, fusion: Mapping[str, Mapping[str, Any]] | None, floor: Mapping[str, float],
             ceiling: Mapping[str, float]) -> Verdict:
    """The worst change against VFN, in percent, over the task customisations (seeds pooled), per metric."""
    target = "; ".join(part for part in (
        ", ".join(k.upper() for k in floor) + f" ≥ {min(floor.values()):.0f}%" if floor else "",
        ", ".join(k.upper() for k in ceiling) + f" ≤ +{max(ceiling.values()):.0f}%" if ceiling else "") if part)
    groups = [g for g in fusion or {} if g.startswith("cldyn_") and not g.startswith("cldyn_second_detector")]
    if not fusion or "vfn" not in fusion or not groups:
        return Verdict(criterion, "not measured", target, None)
    worst: dict[str, float] = {}
    for k in (*floor, *ceiling):
        changes = [percent_change(fusion[g][k][0], fusion["vfn"][k][0]) for g in groups]
        worst[k] = min(changes) if k in floor else max(changes)
    met = all(worst[k] >= f for k, f in floor.items()) and all(worst[k] <= c for k, c in ceiling.items())
    text = ", ".join(f"{k.upper()} {v:+.1f}%" for k, v in worst.items()) + " (worst of the task customisations)"
    return Verdict(criterion, text, target, met)


def fusion_quality_holds(fusion: Mapping[str, Mapping[str, Any]]) -> Verdict:
    """Each task customisation's fusion metrics against VFN within :data:`QUALITY_FLOOR` and
    :data:`QUALITY_CEILING`."""
    return _quality("fusion quality holds", fusion, QUALITY_FLOOR, QUALITY_CEILING)


def unseen_quality_holds(unseen: Mapping[str, Mapping[str, Any]] | None) -> Verdict:
    """On the camera no network saw (``cldyn experiment --unseen``), within :data:`UNSEEN_FLOOR` of VFN."""
    return _quality("no artefacts on an unseen camera", unseen, UNSEEN_FLOOR, {})


def second_detector_gain(tasks: Mapping[str, Any]) -> Verdict:
    """The goal on a detector no run saw: customised with it, mAP@0.5:0.95 above VFN by more than the std."""
    rows = tasks.get("detection (second detector)", {})
    own, vfn = rows.get(SECOND_DETECTOR_ROW, {}).get("map50_95"), rows.get("vfn", {}).get("map50_95")
    if not own or not vfn or own[2] == 0:
        return Verdict("second detector gains (goal)", "not measured", "gain > seeds' std", None)
    gain = own[0] - vfn[0]
    return Verdict("second detector gains (goal)", f"{gain:+.4f} (std {own[1]:.4f})", "gain > seeds' std",
                   gain > own[1] if own[2] > 1 else None)


def verdicts(tasks: Mapping[str, Any], fusion: Mapping[str, Mapping[str, Any]],
             distances: Sequence[Mapping[str, float]], inspection: Sequence[Mapping[str, Any]],
             ablation: str = "no_closed_loop", unseen: Mapping[str, Mapping[str, Any]] | None = None) -> list[Verdict]:
    """Every claim, from one ``cldyn experiment`` (``unseen``: its fusion rows on the unseen camera;
    e.g. the 6 ``m3fd-samples``)."""
    return [distances_differ(distances), kernel_choices_differ(inspection), over_vfn(tasks),
            own_customisation_best(tasks), beats_ablation(tasks, ablation), fusion_quality_holds(fusion),
            unseen_quality_holds(unseen), second_detector_gain(tasks)]


def verdict_markdown(items: Sequence[Verdict]) -> str:
    """A table: criterion, measured, target, met (yes / no / not measurable)."""
    word = {True: "yes", False: "no", None: "not measurable"}
    lines = ["| criterion | measured | target | met |", "|---|---|---|---|"]
    lines += [f"| {v.criterion} | {v.measured} | {v.target} | {word[v.met]} |" for v in items]
    return "\n".join(lines)
