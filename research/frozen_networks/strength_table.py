"""The strength curve: each network's score (CLDyN seed 1, the shipped `visible` RSC) and the fusion quality of the
images customised for it (seed 0, cddfuse convention) at each strength, against VFN (strength 0).

    python research/frozen_networks/strength_table.py docs/training/frozen RUNS/strength/eval_curve/metrics.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

folder, fq_file = Path(sys.argv[1]), Path(sys.argv[2])
TABLES = {0.25: "frozen_table_visible_strength0.25_s1.json", 0.5: "frozen_table_visible_strength0.5.json",
          0.75: "frozen_table_visible_strength0.75_s1.json", 1.0: "frozen_table_visible_strength1.json"}
fq = json.loads(fq_file.read_text())
tasks = ("detection", "segmentation", "saliency")
print("| strength | " + " | ".join(f"{t}-visible" for t in tasks) + " | VIF | Qabf | SSIM |")
print("|---|" + "---|" * (len(tasks) + 3))
rows = {}
for s, name in TABLES.items():
    nets = {n["task"]: n for n in json.loads((folder / name).read_text())["networks"]}
    rows[s] = {t: nets[t]["sources"][nets[t]["labels"]] for t in tasks}
first = next(iter(rows.values()))
vfn_fq = fq["vfn"]
print("| 0 (VFN) | " + " | ".join(f"{first[t]['vfn']['all']:.4f}" for t in tasks)
      + f" | {vfn_fq['vif']:.3f} | {vfn_fq['qabf']:.3f} | {vfn_fq['ssim']:.3f} |")
for s, r in rows.items():
    seeds = [k for k in r[tasks[0]] if k.startswith("cldyn_s")]
    key = seeds[0] if len(seeds) == 1 else "cldyn_s1"  # one-RSC tables hold seed 1 alone, as cldyn_s0
    fused = [fq[f"{t}_s{s:g}"] for t in tasks]  # the folders fused for each task at this strength

    def rel(metric: str, fused: list[dict] = fused) -> str:
        v = sum(f[metric] for f in fused) / len(fused)
        return f"{v:.3f} ({100 * (v / vfn_fq[metric] - 1):+.0f}%)"

    print(f"| {s:g} | " + " | ".join(f"{r[t][key]['all']:.4f}" for t in tasks)
          + f" | {rel('vif')} | {rel('qabf')} | {rel('ssim')} |")
