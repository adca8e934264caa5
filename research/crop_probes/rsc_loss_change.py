"""Does an RSC lower each task's loss on images it never trained on? A smoother signal than val metrics.

The validation metrics (mAP, mIoU, max F) move in steps and are noisy on 70 images; the task loss on many random
crops of the validation pairs moves smoothly. For each task this prints the mean loss of the frozen task network on
the base (VFN) fusion and on the RSC's compensated fusion, over the same ``--batches`` batches of random
``--crop`` crops (seed 0, the training crops' sampler), and the mean relative change per batch.

    python research/crop_probes/rsc_loss_change.py --data ../shared/data/msrs --rsc-weights runs/RUN/last.safetensors \
        [--task-weights detection=F ...] [--split val] [--json OUT]

``--no-closed-loop``: the task features are replaced by zeros, as in the ablation of that name.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace

import torch
from _crop_probe import crop_batches, parse, probe_parser  # the script's own folder is on sys.path

from cldyn.data.task_bank import load_task_bank
from cldyn.inference.sources import image_source
from cldyn.loop.losses import LossWeights
from cldyn.loop.step import closed_loop_losses
from cldyn.model.rsc import CLDyN
from cldyn.tasks import load_task_for
from cldyn.weights import load_rsc_or_shipped, load_vfn_or_shipped


def main() -> None:
    ap = probe_parser(__doc__.splitlines()[0], batches=16)
    ap.add_argument("--rsc-weights")
    ap.add_argument("--vfn-weights")
    ap.add_argument("--split", default="val")
    ap.add_argument("--no-closed-loop", action="store_true")
    args, tasks, weights = parse(ap)
    vfn = load_vfn_or_shipped(args.vfn_weights)
    rsc = load_rsc_or_shipped(args.rsc_weights, vfn)
    if args.no_closed_loop:  # the RSC itself replaces the task features by zeros
        rsc.cfg = replace(rsc.cfg, closed_loop=False)
    model = CLDyN(vfn, rsc).eval()
    result = {}
    for task in tasks:
        adapter = load_task_for(task, weights.get(task)).freeze()
        bank = load_task_bank(task, args.data, args.split, image_source("pair"), adapter.config, log=lambda _: None)
        base, comp, change = [], [], []
        with torch.no_grad():
            for x, y in crop_batches(bank, args.batches, args.batch_size, args.crop):
                _, parts = closed_loop_losses(model, adapter, x[:, :1], x[:, 1:], y,
                                              LossWeights(penalty=0.0, fusion_weight=0.0))
                base.append(parts["base_loss"])
                comp.append(parts["loss"])
                change.append(parts["loss"] / parts["base_loss"] - 1.0)
        row = {"base_loss": statistics.mean(base), "loss": statistics.mean(comp),
               "mean_change": statistics.mean(change), "batches_lower": sum(c < 0 for c in change),
               "batches": args.batches}
        result[task] = row
        print(f"{task}: loss {row['loss']:.4f} compensated vs {row['base_loss']:.4f} base on {args.split} crops; "
              f"mean change {100 * row['mean_change']:+.2f}%, lower on {row['batches_lower']}/{args.batches} batches",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
