"""The README's frozen-network table from a `cldyn frozen-table` result: all images, CLDyN as mean ± std over its seeds,
and each seed's bootstrap against VFN and the better camera.
    python research/frozen_networks/summary.py runs/ft_vis/table.json [GROUP]    (the rows' group; default cldyn)"""
import json
import sys

import numpy as np

with open(sys.argv[1]) as f:
    result = json.load(f)
GROUP = sys.argv[2] if len(sys.argv) > 2 else "cldyn"
METRIC = {"map50_95": "mAP@0.5:0.95", "miou": "mIoU", "max_f": "max F"}
print("| network (metric) | labels | visible | infrared | average | max | VFN | SeAFusion | CLDyN (seeds) "
      "| CLDyN, no loop (seeds) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for net in result["networks"]:
    for variant, src in net["sources"].items():
        cl = np.array([v["all"] for k, v in src.items() if k.startswith(f"{GROUP}_s")])
        nocl = [v["all"] for k, v in src.items() if k.startswith("no_closed_loop_s")]
        plain = [src[k]["all"] for k in ("visible", "infrared", "average", "max", "vfn", "seafusion")]
        best = max(plain + [cl.mean()])
        cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in plain]
        c = f"{cl.mean():.3f} ± {cl.std():.3f}"
        cells.append(f"**{c}**" if cl.mean() == best else c)
        cells.append("" if not nocl else f"{nocl[0]:.3f}" if len(nocl) == 1
                     else f"{np.mean(nocl):.3f} ± {np.std(nocl):.3f}")
        label = {"default": "", "fusion": "fusion boxes", "visible": "visible boxes"}[variant]
        print(f"| {net['network']} ({METRIC[net['metric']]}) | {label} | " + " | ".join(cells) + " |")
print()
print("| network | CLDyN seed | minus VFN [95% interval], p | minus the better camera [95% interval], p |")
print("|---|---|---|---|")
for net in result["networks"]:
    for k in [r for r in net["sources"][net["labels"]] if r.startswith(f"{GROUP}_s")]:
        a, b = net["comparisons"][f"{k} vs vfn"], net["comparisons"][f"{k} vs {net['best_camera']}"]
        fmt = lambda c: f"{c['difference']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}], {c['p_a_not_better']:.3f}"  # noqa: E731
        print(f"| {net['network']} | {k.removeprefix(GROUP + '_')} | {fmt(a)} | {fmt(b)} ({net['best_camera']}) |")
