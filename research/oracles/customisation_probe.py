"""What an RSC's task customisations do to the fused image, on the first pairs of a split, in one process.

For each task network: the customised luminance against the VFN's (mean |change| in 8-bit grey levels, the share of
pixels changed by more than 2 levels) and its fusion metrics relative to the VFN's (MI, VIF, Qabf, SSIM, Qcv, Nabf:
mean over the pairs, then the relative change, as ``cldyn evaluate`` tables it); between tasks, the mean |difference|
of the customisations. A quick check for training runs; the figures to report come from ``cldyn fuse`` +
``cldyn evaluate`` on all val pairs.

    python research/oracles/customisation_probe.py --data ../shared/data/msrs --limit 20 \\
        --rsc-weights runs/rsc/best.safetensors --json runs/probe.json
"""

from __future__ import annotations

import argparse
import json
from itertools import combinations

import numpy as np
import torch

from cldyn.evaluation.evaluate import fusion_metrics, gray_of_array
from cldyn.evaluation.inspect_rsc import load_pairs
from cldyn.model.color import replace_luma, rgb_to_luma
from cldyn.model.rsc import CLDyN
from cldyn.tasks import load_task_for
from cldyn.weights import load_rsc_or_shipped, load_vfn_or_shipped

KEYS = ("mi", "vif", "qabf", "ssim", "qcv", "nabf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--tasks", default="detection,segmentation,saliency")
    ap.add_argument("--task-weights", nargs="*", default=[], help="TASK=FILE (default: the shipped networks)")
    ap.add_argument("--rsc-weights")
    ap.add_argument("--vfn-weights")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = args.tasks.split(",")
    given = dict(kv.split("=", 1) for kv in args.task_weights)
    vfn = load_vfn_or_shipped(args.vfn_weights)
    model = CLDyN(vfn, load_rsc_or_shipped(args.rsc_weights, vfn)).eval()
    adapters = {t: load_task_for(t, given.get(t)).freeze() for t in tasks}
    metrics: dict[str, list[dict[str, float]]] = {k: [] for k in ("vfn", *tasks)}
    change: dict[str, list[float]] = {t: [] for t in tasks}
    changed: dict[str, list[float]] = {t: [] for t in tasks}
    between: dict[str, list[float]] = {f"{a}-{b}": [] for a, b in combinations(tasks, 2)}
    with torch.no_grad():
        for ir, vis in load_pairs(args.data, args.split, args.limit):
            vis_y = rgb_to_luma(vis)
            base_y, reach = model.base_luma_and_reach(ir, vis)
            base = replace_luma(vis, base_y)
            a, b = gray_of_array(ir[0, 0].numpy()), gray_of_array(vis_y[0, 0].numpy())
            metrics["vfn"].append(fusion_metrics(gray_of_array(base_y[0, 0].numpy()), a, b, keys=KEYS))
            custom = {}
            for t in tasks:
                feats = model.features_of_base(base, adapters[t])
                y = model.compensated_luma(ir, vis_y, feats, base_reach=reach)
                custom[t] = y
                d = (y - base_y).abs() * 255
                change[t].append(float(d.mean()))
                changed[t].append(float((d > 2).float().mean()))
                metrics[t].append(fusion_metrics(gray_of_array(y[0, 0].numpy()), a, b, keys=KEYS))
            for a_t, b_t in combinations(tasks, 2):
                between[f"{a_t}-{b_t}"].append(float((custom[a_t] - custom[b_t]).abs().mean() * 255))
    mean = {k: {m: float(np.nanmean([r[m] for r in rows])) for m in KEYS} for k, rows in metrics.items()}
    out = {
        "pairs": len(metrics["vfn"]), "rsc_weights": args.rsc_weights, "vfn": mean["vfn"],
        "relative_to_vfn": {t: {m: mean[t][m] / mean["vfn"][m] - 1 for m in KEYS} for t in tasks},
        "mean_abs_change_grey_levels": {t: float(np.mean(v)) for t, v in change.items()},
        "share_of_pixels_changed_over_2_levels": {t: float(np.mean(v)) for t, v in changed.items()},
        "between_tasks_grey_levels": {k: float(np.mean(v)) for k, v in between.items()},
    }
    print(f"{out['pairs']} pairs, {args.rsc_weights or 'shipped RSC'}")
    print("task          |change|  >2 lv  " + "  ".join(f"{m:>6s}" for m in KEYS))
    for t in tasks:
        rel, share = out["relative_to_vfn"][t], out["share_of_pixels_changed_over_2_levels"][t]
        cells = "  ".join(f"{rel[m]:+6.1%}" for m in KEYS)
        print(f"{t:13s} {out['mean_abs_change_grey_levels'][t]:7.3f}  {share:5.1%}  {cells}")
    print("between tasks: " + ", ".join(f"{k} {v:.3f}" for k, v in out["between_tasks_grey_levels"].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
