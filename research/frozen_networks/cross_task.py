"""The cross-task table: each network trained elsewhere scored on the fusion customised for each task (the peers
``for_detection``, ``for_segmentation``, ``for_saliency`` of a frozen-table run), with VFN for reference; the best
column of each row in bold, and whether it is the row's own task.

    python research/frozen_networks/cross_task.py docs/training/frozen/frozen_table_cross_task.json
"""

from __future__ import annotations

import json
import sys

with open(sys.argv[1]) as f:
    networks = json.load(f)["networks"]
COLUMNS = ("for_detection", "for_segmentation", "for_saliency")
print("| network (metric) | VFN | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " | own best? |")
print("|---|---|" + "---|" * len(COLUMNS) + "---|")
own_best = 0
for net in networks:
    rows = net["sources"][net["labels"]]
    values = {c: rows[c]["all"] for c in COLUMNS}
    best = max(values, key=values.get)
    own = best == f"for_{net['task']}"
    own_best += own
    cells = [f"**{v:.4f}**" if c == best else f"{v:.4f}" for c, v in values.items()]
    print(f"| {net['network']} ({net['metric']}) | {rows['vfn']['all']:.4f} | " + " | ".join(cells)
          + f" | {'yes' if own else 'no'} |")
print(f"\nEach network best on its own task's customisation: {own_best} of {len(networks)}")
