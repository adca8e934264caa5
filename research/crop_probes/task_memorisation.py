"""How much better does each task network do on the images it was trained on than on new ones?

The closed loop asks the frozen task networks what they need from the fused image. On images a network has
memorised its loss is already low and its gradient says little about what new images need, so the gap between its
loss on training crops and on validation crops bounds how useful the RSC's training stream is.

    python research/crop_probes/task_memorisation.py --data ../shared/data/msrs --input runs/msrs_vfn_shipped \
        [--task-weights detection=F ...] [--split docs/training/splits/msrs_train_b.txt] [--json OUT]

Prints, per task, the mean loss over ``--batches`` batches of ``--batch-size`` random ``--crop`` crops (seed 0) of
the training split and of the validation split, and their ratio.
"""

from __future__ import annotations

import json

import torch
from _crop_probe import crop_batches, parse, probe_parser  # the script's own folder is on sys.path

from cldyn.data.task_bank import load_task_bank
from cldyn.inference.sources import image_source
from cldyn.tasks import load_task_for


def mean_loss(adapter, bank, batches: int, batch_size: int, crop: int, seed: int = 0) -> float:
    with torch.no_grad():
        losses = [float(adapter.loss(x, y)) for x, y in crop_batches(bank, batches, batch_size, crop, seed)]
    return sum(losses) / len(losses)


def main() -> None:
    ap = probe_parser(__doc__.splitlines()[0], batches=12)
    ap.add_argument("--input", default="fused", help="image source (as train-task --input)")
    ap.add_argument("--split", default="train", help="the split the networks were trained on")
    ap.add_argument("--val-split", default="val")
    args, tasks, weights = parse(ap)
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
