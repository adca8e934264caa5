"""How much can any customisation of the fused image give a task network, at a given change budget? A labelled oracle.

For each pair of a split and each task network, the VFN's fused luminance is moved against the gradient of the
task's loss *with the pair's own labels* (which no customisation has at inference), scaled so that the mean |change|
is ``budget`` 8-bit grey levels (in ``--steps`` equal steps, the gradient recomputed at each), and saved with the
visible colour put back, one folder per task and budget. Scoring those folders with ``cldyn eval-task`` (each task
network on each task's oracle, ``--against`` for the paired bootstrap) and ``cldyn evaluate`` (fusion quality against
the VFN) bounds what a customisation of that size can do: first-order, label-aware, per image. An RSC sees only the
task network's features, so it can do no better than this at the same budget, to first order.

    python research/oracles/oracle_customisation.py --data ../shared/data/msrs --split val --budgets 0 1 \
        --out runs/oracle
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cldyn.data.io import write_image
from cldyn.data.task_bank import load_task_bank
from cldyn.inference.sources import image_source
from cldyn.loop.step import task_input
from cldyn.model.color import with_colour_of
from cldyn.model.rsc import CLDyN
from cldyn.model.tone import apply_tone_curve, tone_hats
from cldyn.runtime import progress_bar
from cldyn.tasks import load_task_for
from cldyn.weights import load_vfn_or_shipped


def labels_of(task: str, label: torch.Tensor):
    """One full image's label as the adapter's loss takes a batch of one."""
    if task == "segmentation":
        return label[None].long()
    if task == "saliency":
        return label[None, None].float()
    return [label]


def pseudo_labels(task: str, adapter, vis: torch.Tensor, y: torch.Tensor, min_score: float = 0.3):
    """The network's own predictions on the base fusion, as labels (what a label-free customisation could use):
    argmax classes, the saliency map above 0.5, or the detections scoring at least ``min_score``."""
    pred = adapter.predict(task_input(vis, y))
    if task == "segmentation":
        return pred.long()
    if task == "saliency":
        return (pred > 0.5).float()
    h, w = y.shape[-2:]
    d = pred[0]
    keep = d["scores"] >= min_score
    b, c = d["boxes"][keep].float(), d["labels"][keep].float()
    boxes = torch.stack((c, (b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h, (b[:, 2] - b[:, 0]) / w,
                         (b[:, 3] - b[:, 1]) / h), 1)
    return [boxes]


def sparsify(grad: torch.Tensor, keep: float) -> torch.Tensor:
    """``grad`` with all but its ``keep`` share of largest-magnitude pixels set to zero (per image)."""
    if keep >= 1:
        return grad
    flat = grad.abs().flatten(1)
    k = max(1, int(round(keep * flat.shape[1])))
    threshold = flat.topk(k, dim=1).values[:, -1:]
    return grad * (grad.abs().flatten(1) >= threshold).view_as(grad)


def loss_gradient(adapter, vis: torch.Tensor, y: torch.Tensor, target) -> torch.Tensor:
    """The gradient of the task loss with respect to the fused luminance ``y``."""
    y = y.detach().requires_grad_(True)
    return torch.autograd.grad(adapter.loss(task_input(vis, y), target), y)[0]


def step_against(y: torch.Tensor, grad: torch.Tensor, budget: float, sign: bool = False) -> torch.Tensor:
    """``y`` moved against ``grad``, mean |change| ``budget`` grey levels (before clamping to [0, 1]): in proportion
    to the gradient, or (``sign``) by ``budget`` at every pixel with a gradient, against its sign (the L-infinity
    steepest step; a proportional step puts tens of levels on the few pixels where the gradient peaks)."""
    if sign:
        step = grad.sign()
        step = step / step.abs().mean().clamp_min(1e-12)  # mean |change| = budget even where the gradient is zero
    else:
        step = grad / grad.abs().mean().clamp_min(1e-12)
    return (y - budget / 255.0 * step).clamp(0, 1).detach()


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a step that runs the task networks over a split: data, split, tasks, limit, threads."""
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--tasks", default="detection,segmentation,saliency")
    parser.add_argument("--limit", type=int, help="only the first N pairs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--networks", default="", metavar="SUFFIX",
                        help="the shipped networks TASK+SUFFIX (e.g. -visible: trained elsewhere); default: in-domain")


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a step that fits on one collected split and scores on another."""
    parser.add_argument("--out", required=True, help="the folder of the collected splits")
    parser.add_argument("--fit", default="train")
    parser.add_argument("--check", default="val")
    parser.add_argument("--levels", type=float, default=3.0, help="the customisation's size in grey levels")


def pair_tensors(item) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ir (1, 1, H, W), vis (1, 3, H, W))`` in [0, 1] of a task-bank item."""
    x = item.image[None].float() / 255.0
    return x[:, :1], x[:, 1:]


def labelled_pass(model: CLDyN, task: str, adapter, item, pseudo: bool = False):
    """One pair's VFN fusion and the task network on it: ``(ir, vis, base_y, features, loss, gradient of the loss
    with respect to base_y)``, with the pair's labels (or, ``pseudo``, the network's own predictions as labels)."""
    ir, vis = pair_tensors(item)
    with torch.no_grad():
        base_y = model.base_luma_and_reach(ir, vis)[0]
        target = pseudo_labels(task, adapter, vis, base_y) if pseudo else labels_of(task, item.label)
    y = base_y.clone().requires_grad_(True)
    feats, output = adapter.features_and_output(task_input(vis, y))
    loss = adapter.loss_from_output(output, target)
    return ir, vis, base_y, feats.detach(), loss.detach(), torch.autograd.grad(loss, y)[0]


def network_for(task: str, suffix: str = ""):
    """The frozen network of ``task``: the shipped in-domain one, or (``suffix``, e.g. ``-visible``) the shipped
    network ``task + suffix``."""
    return load_task_for(task, f"{task}{suffix}" if suffix else None).freeze()


def write_customisations(model: CLDyN, data: str, split: str, tasks, images: str | Path, customise,
                         limit: int | None = None, notes: dict | None = None, suffix: str = "") -> dict[str, float]:
    """For each task, ``customise(task, ir, vis, base_y, features) -> y`` applied to every pair of ``split`` (the VFN
    fusion ``base_y`` and the task network's features of it), written with the visible colour put back into
    ``images/task``; returns each task's mean |change| in grey levels, also written with ``notes`` (e.g. what made
    the customisations) to ``images/changes.json``."""
    record = {}
    for task in tasks:
        adapter = network_for(task, suffix)
        bank = load_task_bank(task, data, split, image_source("pair"), adapter.config, print)
        folder = Path(images) / task
        folder.mkdir(parents=True, exist_ok=True)
        changes = []
        for it in progress_bar(bank.items[:limit], desc=f"write {task}", unit="pair"):
            ir, vis = pair_tensors(it)
            with torch.no_grad():
                base_y = model.base_luma_and_reach(ir, vis)[0]
                y = customise(task, ir, vis, base_y, adapter.features(task_input(vis, base_y)))
            changes.append(float((y - base_y).abs().mean()) * 255)
            write_image(folder / f"{it.name}.png", with_colour_of(vis, y)[0].permute(1, 2, 0).numpy())
        record[task] = sum(changes) / len(changes)
        print(task, "mean |change|", record[task])
    (Path(images) / "changes.json").write_text(json.dumps({"mean_abs_change_levels": record, **(notes or {})},
                                                          indent=2))
    return record


def tone_gradient(grad: torch.Tensor, y: torch.Tensor, knots: int) -> torch.Tensor:
    """The loss gradient with respect to the tone-curve coefficients at zero: ``(B, K)``."""
    return (grad.flatten(2) * tone_hats(y, knots)).sum(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--tasks", default="detection,segmentation,saliency")
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.0, 1.0], help="mean |change|, 8-bit grey levels")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--keep", type=float, default=1.0, help="change only this share of the pixels (largest |gradient|)")
    ap.add_argument("--sign", action="store_true", help="the same change at every pixel, against the gradient's sign")
    ap.add_argument("--pseudo", action="store_true", help="the network's own predictions on the base fusion as labels")
    ap.add_argument("--tone", type=int, default=0, metavar="K",
                    help="a tone curve instead of a per-pixel change: K hat coefficients, each moved by the budget "
                         "against the sign of its gradient (monotone while 2 * budget / 255 < 1 / (K - 1))")
    ap.add_argument("--tone-fit", metavar="SPLIT",
                    help="with --tone: one curve per task, from the gradient summed over SPLIT's pairs (labels of "
                         "SPLIT, none of --split's): what a customisation that knows only the task can do")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--networks", default="", metavar="SUFFIX",
                    help="the shipped networks TASK+SUFFIX (e.g. -visible: trained elsewhere); default: in-domain")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = CLDyN(load_vfn_or_shipped(None)).eval()  # only its base (VFN) fusion is used
    out = Path(args.out)
    record = {"budgets": args.budgets, "steps": args.steps, "keep": args.keep, "sign": args.sign,
              "pseudo": args.pseudo, "networks": args.networks, "tone": args.tone, "tone_fit": args.tone_fit,
              "tasks": {}}
    for task in args.tasks.split(","):
        adapter = network_for(task, args.networks)
        bank = load_task_bank(task, args.data, args.split, image_source("pair"), adapter.config, print)
        changes = {b: [] for b in args.budgets}
        fitted = None
        if args.tone and args.tone_fit:
            fit_bank = load_task_bank(task, args.data, args.tone_fit, image_source("pair"), adapter.config, print)
            fitted = torch.zeros(1, args.tone)
            for it in progress_bar(fit_bank.items[:args.limit], desc=f"{task} fit", unit="pair"):
                ir, vis = pair_tensors(it)
                with torch.no_grad():
                    base_y = model.base_luma_and_reach(ir, vis)[0]
                fitted += tone_gradient(loss_gradient(adapter, vis, base_y, labels_of(task, it.label)),
                                        base_y, args.tone)
            record.setdefault("tone_gradient", {})[task] = fitted[0].tolist()
        for it in progress_bar(bank.items[:args.limit], desc=task, unit="pair"):
            ir, vis = pair_tensors(it)
            with torch.no_grad():
                base_y = model.base_luma_and_reach(ir, vis)[0]
                target = pseudo_labels(task, adapter, vis, base_y) if args.pseudo else labels_of(task, it.label)
            # the same for every budget (none for a fitted curve)
            first = None if fitted is not None else sparsify(loss_gradient(adapter, vis, base_y, target), args.keep)
            for b in args.budgets:
                y = base_y
                for k in range(args.steps if b else 0):
                    if args.tone:
                        g = fitted if fitted is not None else tone_gradient(
                            first if k == 0 else loss_gradient(adapter, vis, y, target), y, args.tone)
                        y = apply_tone_curve(y, -b / args.steps / 255.0 * g.sign()).detach()
                        continue
                    grad = first if k == 0 else sparsify(loss_gradient(adapter, vis, y, target), args.keep)
                    y = step_against(y, grad, b / args.steps, args.sign)
                changes[b].append(float((y - base_y).abs().mean()) * 255)
                rgb = with_colour_of(vis, y)[0].permute(1, 2, 0).numpy()
                folder = out / f"b{b:g}" / task
                folder.mkdir(parents=True, exist_ok=True)
                write_image(folder / f"{it.name}.png", rgb)
        record["tasks"][task] = {f"b{b:g}": {"mean_abs_change": float(np.mean(c)), "pairs": len(c)}
                                 for b, c in changes.items()}
        print(task, json.dumps(record["tasks"][task]))
    (out / "oracle.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
