"""Label-free, per-image choice of the input for a frozen network: does the network's own confidence pick the image
it reads best?

For every val pair, several candidate images (visible, average, VFN, CLDyN at strength 0.5 with the change limit,
CLDyN at strength 1 without it) go through the frozen network; its predictions and label-free confidences are
stored (``OUT/NET.pt``). ``report`` then picks, per image, the candidate of highest confidence within a candidate
set and scores the picks like ``cldyn frozen-table`` (paired bootstrap against VFN and the visible image), next to
the labelled per-image oracle among the same candidates.

    python research/frozen_networks/select_by_confidence.py predict ../shared/data/msrs OUT detection-visible ...
    python research/frozen_networks/select_by_confidence.py report ../shared/data/msrs OUT detection-visible ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cldyn.data.labels import discover_task_samples
from cldyn.data.task_bank import load_task_bank
from cldyn.evaluation.bootstrap import COMPARED_METRIC, metric_scorer, paired_bootstrap
from cldyn.inference.sources import image_source
from cldyn.model.color import luma_of, with_colour_of
from cldyn.model.ops import as_rgb, pad_to_multiple
from cldyn.model.rsc import CLDyN, at_strength
from cldyn.tasks import load_pretrained_task
from cldyn.tasks.evaluation import unpad_prediction
from cldyn.weights import load_rsc_or_shipped, load_vfn_or_shipped

CANDIDATES = ("visible", "average", "vfn", "cldyn05", "cldyn1")
SETS = {
    "cldyn strengths": ("vfn", "cldyn05", "cldyn1"),
    "+ average": ("vfn", "cldyn05", "cldyn1", "average"),
    "+ visible": ("vfn", "cldyn05", "cldyn1", "visible"),
    "visible or cldyn05": ("visible", "cldyn05"),
    "all": CANDIDATES,
}


def confidences(adapter, image: torch.Tensor) -> tuple[object, dict[str, float]]:
    """One image's prediction (as ``predict`` gives it) and label-free confidences of the network on it."""
    task = adapter.task
    if task == "segmentation":
        logits = F.interpolate(adapter.forward(image), size=image.shape[-2:], mode="bilinear", align_corners=False)
        p = logits.softmax(1)
        ent = -(p * p.clamp_min(1e-12).log()).sum(1).mean()
        return logits.argmax(1)[0], {"maxprob": float(p.max(1).values.mean()), "neg_entropy": float(-ent)}
    if task == "saliency":
        p = adapter.predict(image)[0]
        return p, {"certainty": float((2 * p - 1).abs().mean()),
                   "neg_entropy": float(-(-(p * p.clamp_min(1e-6).log()
                                            + (1 - p) * (1 - p).clamp_min(1e-6).log())).mean())}
    pred = adapter.predict(image)[0]
    s = pred["scores"]
    top = torch.sort(s, descending=True).values
    return pred, {"sum_over_0.3": float(s[s > 0.3].sum()), "sum_over_0.5": float(s[s > 0.5].sum()),
                  "top3_mean": float(top[:3].mean()) if len(top) else 0.0,
                  "max": float(top[0]) if len(top) else 0.0}


@torch.no_grad()
def predict(args) -> None:
    torch.set_num_threads(args.threads)
    vfn = load_vfn_or_shipped(None)
    model = CLDyN(vfn, load_rsc_or_shipped(args.rsc, vfn), None).eval()
    for net in args.networks:
        path = Path(args.out) / f"{net}.pt"
        if path.is_file():
            continue
        adapter = load_pretrained_task(net).freeze()
        names = [s.name for s in discover_task_samples(args.data, adapter.task, "val").samples][:args.limit]
        bank = load_task_bank(adapter.task, args.data, "val", image_source("pair"), adapter.config,
                              log=lambda _m: None, names=names, classes=adapter.label_classes)
        rows = {c: {"preds": [], "conf": []} for c in CANDIDATES}
        for k, it in enumerate(bank.items):
            x, (h, w) = pad_to_multiple(it.image[None].float() / 255.0, 32)
            ir, vis = x[:, :1], x[:, 1:]
            base, full = model.fuse_with_base(ir, vis, adapter, strength=1.0)
            base_y, full_y = luma_of(base), luma_of(full)
            images = {"visible": vis, "average": with_colour_of(vis, (ir + luma_of(vis)) / 2), "vfn": base,
                      "cldyn05": with_colour_of(vis, at_strength(base_y, full_y, 0.5, 6.0)), "cldyn1": full}
            for c, img in images.items():
                pred, conf = confidences(adapter, as_rgb(img))
                rows[c]["preds"].append(unpad_prediction(pred, h, w))
                rows[c]["conf"].append(conf)
            print(f"{net} {k + 1}/{len(bank.items)}", flush=True)
        targets = [it.label for it in bank.items]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"names": [it.name for it in bank.items], "rows": rows, "targets": targets}, path)


def report(args) -> None:
    for net in args.networks:
        d = torch.load(Path(args.out) / f"{net}.pt", weights_only=False)
        adapter = load_pretrained_task(net)
        metric = COMPARED_METRIC[adapter.task]
        rows, targets, names = d["rows"], d["targets"], d["names"]
        n = len(names)
        night = np.array([i for i, s in enumerate(names) if s.endswith("N")], dtype=np.int64)
        day = np.array([i for i, s in enumerate(names) if s.endswith("D")], dtype=np.int64)
        score = {c: metric_scorer(adapter, rows[c]["preds"], targets, metric) for c in CANDIDATES}
        print(f"\n## {net} ({metric}, {n} pairs)")
        print("| input | all | day | night |\n|---|---|---|---|")
        for c in CANDIDATES:
            print(f"| {c} | {score[c](np.arange(n)):.4f} | {score[c](day):.4f} | {score[c](night):.4f} |")
        per_image = {c: np.array([score[c](np.array([i])) for i in range(n)]) for c in CANDIDATES}
        measures = list(rows["vfn"]["conf"][0])
        print("\n| set | pick by | all | day | night | minus vfn, p | minus visible, p | picks |")
        print("|---|---|---|---|---|---|---|---|")
        for set_name, cands in SETS.items():
            for m in [*measures, "oracle"]:
                if m == "oracle":
                    vals = np.stack([per_image[c] for c in cands])
                else:
                    vals = np.array([[rows[c]["conf"][i][m] for i in range(n)] for c in cands])
                pick = vals.argmax(0)
                preds = [rows[cands[p]]["preds"][i] for i, p in enumerate(pick)]
                s = metric_scorer(adapter, preds, targets, metric)
                out = [f"{s(idx):.4f}" for idx in (np.arange(n), day, night)]
                cmp = []
                for other in ("vfn", "visible"):
                    b = paired_bootstrap(s, score[other], n, args.resamples, 0)
                    cmp.append(f"{b['difference']:+.4f}, {b['p_a_not_better']:.3f}")
                counts = " ".join(f"{c}:{int((pick == j).sum())}" for j, c in enumerate(cands))
                print(f"| {set_name} | {m} | {' | '.join(out)} | {cmp[0]} | {cmp[1]} | {counts} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("predict", "report"))
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("networks", nargs="+")
    p.add_argument("--rsc", default="visible")
    p.add_argument("--limit", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resamples", type=int, default=300)
    args = p.parse_args()
    (predict if args.mode == "predict" else report)(args)


if __name__ == "__main__":
    main()
