"""How much better does each task network do on the images it was trained on than on new ones?

The closed loop asks the frozen task networks what they need from the fused image. On images a network has
memorised its loss is already low and its gradient says little about what new images need, so the gap between its
loss on training crops and on validation crops bounds how useful the RSC's training stream is.

    python scripts/task_memorisation.py --data ../shared/data/msrs --input runs/msrs_vfn_shipped \
        [--task-weights detection=F ...] [--split docs/training/splits/msrs_train_b.txt] [--json OUT]

Prints, per task, the mean loss over ``--batches`` batches of ``--batch-size`` random ``--crop`` crops (seed 0) of
the training split and of the validation split, and their ratio.
"""

from __future__ import annotations

import argparse
import json

import torch

from cldyn.cli.common import task_map
from cldyn.data.task_bank import load_task_bank
from cldyn.inference.sources import image_source
from cldyn.tasks import load_task_for


def mean_loss(adapter, bank, batches: int, batch_size: int, crop: int, seed: int = 0) -> float:
    gen = torch.Generator().manual_seed(seed)
    losses = []
    with torch.no_grad():
        for _ in range(batches):
            idx = torch.randint(0, len(bank), (batch_size,), generator=gen).tolist()
            x, y = bank.batch(idx, gen, crop)
            losses.append(float(adapter.loss(x, y)))
    return sum(losses) / len(losses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--input", default="fused", help="image source (as train-task --input)")
    ap.add_argument("--tasks", default="detection,segmentation,saliency")
    ap.add_argument("--task-weights", nargs="*", action="extend", default=[], metavar="TASK=FILE")
    ap.add_argument("--split", default="train", help="the split the networks were trained on")
    ap.add_argument("--val-split", default="val")
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tasks = args.tasks.split(",")
    weights = task_map(args.task_weights, tasks, "--task-weights")
    source = image_source(args.input)
    result = {}
    for task in tasks:
        adapter = load_task_for(task, weights.get(task)).freeze()
        row = {}
        for name, split in (("train", args.split), ("val", args.val_split)):
            bank = load_task_bank(task, args.data, split, source, adapter.config, log=lambda _: None)
            row[name] = mean_loss(adapter, bank, args.batches, args.batch_size, args.crop)
        row["val_over_train"] = row["val"] / row["train"]
        result[task] = row
        print(f"{task}: loss {row['train']:.3f} on {args.split} crops, {row['val']:.3f} on {args.val_split} crops "
              f"({row['val_over_train']:.2f}x)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
