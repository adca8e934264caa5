"""The claims' verdicts on hand-made experiment tables (every figure below is computed by hand)."""

from __future__ import annotations

import doctest

import cldyn.evaluation.claims as dw
from cldyn.evaluation.claims import (
    beats_ablation,
    distances_differ,
    fusion_quality_holds,
    kernel_choices_differ,
    over_vfn,
    own_customisation_best,
    second_detector_gain,
    unseen_quality_holds,
    verdict_markdown,
    verdicts,
)
from cldyn.evaluation.tables import SECOND_DETECTOR_ROW, ablation_row, customised_row

TASKS = ("detection", "segmentation", "saliency")


def task_table(own: dict[str, list[float]], vfn: float = 0.5, others: float = 0.49,
               ablation: list[float] | None = None) -> dict:
    """Primary-metric cells: own customisation ``own[t]``, VFN ``vfn``, the other customisations ``others``."""
    metric = dw.JUDGED_ON
    table = {}
    for t in TASKS:
        rows = {"vfn": {metric[t]: [vfn, 0.0, 1]}}
        for o in TASKS:
            rows[customised_row(o, t)] = {metric[t]: own[t] if o == t else [others, 0.0, 3]}
        if ablation is not None:
            rows[ablation_row("no_closed_loop")] = {metric[t]: ablation}
        table[t] = rows
    return table


def test_the_module_example_runs():
    assert doctest.testmod(dw).failed == 0


def test_gain_over_vfn_must_exceed_the_seeds_std_on_every_task():
    ok = task_table({t: [0.52, 0.01, 3] for t in TASKS})  # +0.02 > 0.01
    assert over_vfn(ok).met is True
    one_short = task_table({**{t: [0.52, 0.01, 3] for t in TASKS}, "saliency": [0.505, 0.01, 3]})  # +0.005 < 0.01
    v = over_vfn(one_short)
    assert v.met is False and "saliency +0.0050 (std 0.0100)" in v.measured
    single_seed = task_table({t: [0.52, 0.0, 1] for t in TASKS})
    assert over_vfn(single_seed).met is None  # no std between seeds to beat


def test_own_customisation_must_score_best_on_two_tasks():
    wins = task_table({t: [0.52, 0.0, 3] for t in TASKS})  # own 0.52 > others 0.49 everywhere
    v = own_customisation_best(wins)
    assert v.met is True and v.measured.startswith("3/3")
    table = task_table({t: [0.48, 0.0, 3] for t in TASKS})  # own 0.48 < others 0.49
    table["detection"][customised_row("detection", "detection")]["map50_95"] = [0.60, 0.0, 3]
    v = own_customisation_best(table)
    assert v.met is False and v.measured.startswith("1/3")


def test_the_ablation_must_be_beaten_by_more_than_the_larger_std():
    own = {t: [0.52, 0.004, 3] for t in TASKS}
    v = beats_ablation(task_table(own, ablation=[0.51, 0.005, 3]))  # gap 0.01 > max(0.004, 0.005)
    assert v.met is True and v.measured.startswith("3/3")
    v = beats_ablation(task_table(own, ablation=[0.515, 0.006, 3]))  # gap 0.005 < 0.006
    assert v.met is False and v.measured.startswith("0/3")
    assert beats_ablation(task_table(own)).met is None  # no ablation row
    assert beats_ablation(task_table(own, ablation=[0.40, 0.0, 1])).met is None  # one ablation seed: no std


def test_distances_use_the_mean_over_runs_and_every_pair():
    runs = [{"a vs b": 1.2, "a vs c": 0.9}, {"a vs b": 1.0, "a vs c": 1.3}]  # means 1.1 and 1.1
    v = distances_differ(runs)
    assert v.met is True and "a vs b 1.100 ± 0.100" in v.measured
    assert distances_differ([{"a vs b": 1.2, "a vs c": 0.9}]).met is False
    against_vfn = distances_differ([{"a vs b": 1.2, "a vs VFN": 0.1}])  # each against VFN is not a task pair
    assert against_vfn.met is True and "VFN" not in against_vfn.measured
    assert distances_differ([]).met is None


def test_kernel_agreement_must_stay_under_half_in_every_block():
    def run(*shares):
        return {"blocks": [{"choices_agree_share": s} for s in shares]}

    assert kernel_choices_differ([run(0.2, 0.4), run(0.4, 0.5)]).met is True  # block means 0.3, 0.45
    v = kernel_choices_differ([run(0.2, 0.6), run(0.4, 0.5)])  # block means 0.3, 0.55
    assert v.met is False and "worst block 55%" in v.measured
    assert kernel_choices_differ([]).met is None


def test_fusion_quality_takes_the_worst_customisation_against_vfn():
    def row(mi, qcv):
        return {"mi": (mi, 0, 1), "vif": (1.0, 0, 1), "qabf": (1.0, 0, 1), "ssim": (1.0, 0, 1),
                "qcv": (qcv, 0, 1), "nabf": (1.0, 0, 1)}

    fusion = {"vfn": row(2.0, 100.0), "cldyn_detection": row(1.95, 105.0), "cldyn_saliency": row(2.0, 109.0)}
    v = fusion_quality_holds(fusion)  # MI -2.5%, Qcv +9%
    assert v.met is True and "MI -2.5%" in v.measured and "QCV +9.0%" in v.measured
    fusion["cldyn_segmentation"] = row(1.9, 100.0)  # MI -5%
    assert fusion_quality_holds(fusion).met is False
    fusion["cldyn_segmentation"] = row(2.0, 111.0)  # Qcv +11%
    assert fusion_quality_holds(fusion).met is False


def test_unseen_camera_allows_five_percent_on_vif_ssim_and_qabf():
    def row(vif, ssim):
        return {"vif": (vif, 0, 1), "ssim": (ssim, 0, 1), "qabf": (0.6, 0, 1)}

    unseen = {"vfn": row(0.8, 1.0), "cldyn_detection": row(0.776, 0.99)}  # VIF -3%, SSIM -1%
    v = unseen_quality_holds(unseen)
    assert v.met is True and "VIF -3.0%" in v.measured and v.target == "VIF, SSIM, QABF ≥ -5%"
    unseen["cldyn_saliency"] = row(0.8, 0.94)  # SSIM -6%
    assert unseen_quality_holds(unseen).met is False
    assert unseen_quality_holds(None).met is None


def test_second_detector_gain_and_the_markdown_table():
    tasks = {"detection (second detector)": {"vfn": {"map50_95": [0.30, 0.0, 1]},
                                             SECOND_DETECTOR_ROW: {"map50_95": [0.31, 0.004, 3]}}}
    assert second_detector_gain(tasks).met is True
    tasks["detection (second detector)"][SECOND_DETECTOR_ROW]["map50_95"] = [0.302, 0.004, 3]
    assert second_detector_gain(tasks).met is False
    items = verdicts(tasks, {}, [], [])
    assert len(items) == 8 and all(v.met is None for v in items[:-1])
    md = verdict_markdown(items)
    assert md.count("\n") == 9
    assert "| second detector gains (goal) | +0.0020 (std 0.0040) | gain > seeds' std | no |" in md
    assert "not measurable" in md
