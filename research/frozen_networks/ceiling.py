"""Share of the gap between VFN and the ceiling that CLDyN closes, per task: (CLDyN - VFN) / (ceiling - VFN), where
the ceiling is the in-domain network (trained on the VFN's own images) on the VFN's image, and CLDyN and VFN are the
network trained elsewhere on its customisation and on the VFN's image.

    python research/frozen_networks/ceiling.py docs/training/frozen/frozen_table_visible_strength1.json \
        docs/training/frozen/frozen_table_indomain_rsc_visible.json [--group cldyn]
"""

from __future__ import annotations

import argparse
import json
import statistics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("elsewhere", help="frozen-table JSON of the networks trained elsewhere (with CLDyN seeds)")
    ap.add_argument("indomain", help="frozen-table JSON of the in-domain networks (its vfn row is the ceiling)")
    ap.add_argument("--group", default="cldyn", help="the CLDyN rows: GROUP_s0, GROUP_s1, ...")
    args = ap.parse_args()
    with open(args.elsewhere) as f:
        elsewhere = json.load(f)["networks"]
    with open(args.indomain) as f:
        ceiling = {n["task"]: n for n in json.load(f)["networks"] if n.get("labels") in ("fusion", "default", None)}
    print("| network | metric | VFN | CLDyN (mean of seeds) | ceiling: in-domain network on VFN | share closed |")
    print("|---|---|---|---|---|---|")
    for net in elsewhere:
        if net.get("labels") not in ("fusion", "default", None) or net["task"] not in ceiling:
            continue
        rows = net["sources"].get(net.get("labels") or "fusion") or next(iter(net["sources"].values()))
        seeds = [v["all"] for k, v in rows.items() if k.startswith(args.group + "_s") or k == args.group]
        top = ceiling[net["task"]]
        top_rows = top["sources"].get(top.get("labels") or "fusion") or next(iter(top["sources"].values()))
        vfn, best = rows["vfn"]["all"], top_rows["vfn"]["all"]
        mean = statistics.mean(seeds)
        print(f"| {net['network']} | {net['metric']} | {vfn:.4f} | {mean:.4f} ({len(seeds)}) | {best:.4f} "
              f"({top['network']}) | {100 * (mean - vfn) / (best - vfn):.0f}% |")


if __name__ == "__main__":
    main()
