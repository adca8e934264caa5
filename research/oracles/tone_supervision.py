"""Can a tone head learn each image's tone from what it reads? Collect, per pair and task, the tone head's inputs and
the labelled gradient of the task loss with respect to the tone-curve knots (full images, the VFN's fusion), then fit
a head to move its knots against those gradients (the first-order change of the task loss, summed over the images),
and write the fitted head's customisations of another split for scoring.

    python research/oracles/tone_supervision.py collect --data ../shared/data/msrs --split train --out runs/tone_sup
    python research/oracles/tone_supervision.py collect --data ../shared/data/msrs --split val --out runs/tone_sup
    python research/oracles/tone_supervision.py fit --out runs/tone_sup --fit train --check val --levels 3
    python research/oracles/tone_supervision.py write --data ../shared/data/msrs --split val --out runs/tone_sup \
        --head runs/tone_sup/head.pt --images runs/tone_sup/val_b3

The first-order objective is what the closed loop optimises for a tone head at zero (the gradient of the task loss
with respect to the knots), on whole images instead of crops, with each image's gradient computed once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from oracle_customisation import (  # the script's own folder is on sys.path
    add_fit_arguments,
    add_split_arguments,
    labelled_pass,
    tone_gradient,
    write_customisations,
)

from cldyn.data.task_bank import load_task_bank  # noqa: E402
from cldyn.inference.sources import image_source  # noqa: E402
from cldyn.loop.losses import reward_penalty
from cldyn.model.rsc import CLDyN  # noqa: E402
from cldyn.model.tone import ToneConfig, ToneHead  # noqa: E402
from cldyn.runtime import progress_bar  # noqa: E402
from cldyn.tasks import load_task_for  # noqa: E402
from cldyn.weights import load_vfn_or_shipped  # noqa: E402

TASKS = ("detection", "segmentation", "saliency")


def collect(args: argparse.Namespace) -> None:
    model = CLDyN(load_vfn_or_shipped(None)).eval()  # only its base (VFN) fusion is used
    head = ToneHead(ToneConfig(knots=args.knots))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks.split(","):
        adapter = load_task_for(task).freeze()
        bank = load_task_bank(task, args.data, args.split, image_source("pair"), adapter.config, print)
        xs, gs, losses, names = [], [], [], []
        for it in progress_bar(bank.items[:args.limit], desc=f"{args.split} {task}", unit="pair"):
            _, _, base_y, feats, loss, grad = labelled_pass(model, task, adapter, it, args.pseudo)
            xs.append(head.inputs(feats, base_y))
            gs.append(tone_gradient(grad, base_y, args.knots))
            losses.append(float(loss))
            names.append(it.name)
        torch.save({"inputs": torch.cat(xs), "knot_gradients": torch.cat(gs), "losses": losses, "names": names,
                    "knots": args.knots}, out / f"{args.split}{'_pseudo' if args.pseudo else ''}_{task}.pt")


def load(out: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, knot gradients and task index of every (pair, task) of a split."""
    xs, gs, ts = [], [], []
    for t, task in enumerate(TASKS):
        d = torch.load(out / f"{split}_{task}.pt")
        xs.append(d["inputs"])
        gs.append(d["knot_gradients"])
        ts.append(torch.full((len(d["inputs"]),), t))
    return torch.cat(xs), torch.cat(gs), torch.cat(ts)


def first_order(head: ToneHead, x: torch.Tensor, g: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """First-order change of each (image, task)'s loss, in units of its gradient's L1 norm at the budget:
    ``sum_k g_k c_k / (sum_k |g_k| * budget)``, in [-1, 1] (-1: every knot moved the full budget against its
    gradient, the labelled sign oracle)."""
    return ((head.coefficients_of_inputs(x) * 255.0 / head.cfg.max_levels) * g / scale).sum(1)


def fit(args: argparse.Namespace) -> None:
    out = Path(args.out)
    x, g, t = load(out, args.fit)
    xv, gv, tv = load(out, args.check)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    # Each (image, task)'s gradient in units of its own size, so that no single image or task dominates.
    scale, scale_v = g.abs().sum(1, keepdim=True).clamp_min(1e-12), gv.abs().sum(1, keepdim=True).clamp_min(1e-12)
    torch.manual_seed(args.seed)
    head = ToneHead(ToneConfig(knots=g.shape[1], max_levels=args.levels, hidden=args.hidden))
    with torch.no_grad():  # a fresh head is the identity; start its last layer small but non-zero to break symmetry
        head.net[-1].weight.normal_(0, 1e-3)
    opt = torch.optim.Adam(head.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    zn, zv = (x - mean) / std, (xv - mean) / std
    history = []
    # Baseline: one curve per task (the sign of the task's summed fit gradient), scored on the check split.
    const = [float((-(g[t == k] / scale[t == k]).sum(0).sign() * gv[tv == k] / scale_v[tv == k]).sum(1).mean())
             for k in range(len(TASKS))]
    print("one curve per task, check split:", " ".join(f"{v:+.4f}" for v in const))
    print("first-order change per (image, task), in units of its gradient's L1 norm: -1 is the labelled sign oracle")
    for epoch in range(args.epochs):
        opt.zero_grad()
        # the closed loop's reward-penalty loss to first order: L - L_base is the first-order change, L_base is 0
        objective = reward_penalty(first_order(head, zn, g, scale), torch.zeros(()), args.penalty).mean()
        objective.backward()
        opt.step()
        if epoch % args.report_every == 0 or epoch == args.epochs - 1:
            with torch.no_grad():
                per_task = [float(first_order(head, zv[tv == k], gv[tv == k], scale_v[tv == k]).mean())
                            for k in range(len(TASKS))]
            history.append({"epoch": epoch, "fit": float(objective), "check": per_task})
            print(epoch, f"fit {float(objective):+.4f}", "check " + " ".join(f"{v:+.4f}" for v in per_task))
    # the normalisation folds into the first layer, so the saved head reads raw inputs
    with torch.no_grad():
        first = head.net[0]
        first.bias -= (first.weight * (mean / std)).sum(1)
        first.weight /= std
    torch.save({"state": head.state_dict(), "cfg": {"knots": g.shape[1], "max_levels": args.levels,
                                                     "hidden": args.hidden}, "history": history}, out / args.name)
    print("saved", out / args.name)


def write(args: argparse.Namespace) -> None:
    d = torch.load(args.head)
    head = ToneHead(ToneConfig(**d["cfg"]))
    head.load_state_dict(d["state"])
    head.eval()
    model = CLDyN(load_vfn_or_shipped(None)).eval()  # only its base (VFN) fusion is used
    write_customisations(model, args.data, args.split, args.tasks.split(","), args.images,
                         lambda task, ir, vis, base_y, feats: head(feats, base_y), args.limit, {"head": args.head})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    add_split_arguments(c)
    c.add_argument("--knots", type=int, default=8)
    c.add_argument("--pseudo", action="store_true", help="the network's own predictions on the base fusion as labels")
    c.add_argument("--out", required=True)
    f = sub.add_parser("fit")
    add_fit_arguments(f)  # --levels: the head's largest knot move
    f.add_argument("--hidden", type=int, default=32)
    f.add_argument("--lr", type=float, default=3e-3)
    f.add_argument("--weight-decay", type=float, default=1e-3)
    f.add_argument("--epochs", type=int, default=2000)
    f.add_argument("--report-every", type=int, default=200)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--penalty", type=float, default=5.0, help="the reward-penalty weight (0: first-order loss only)")
    f.add_argument("--name", default="head.pt")
    w = sub.add_parser("write")
    add_split_arguments(w)
    w.add_argument("--head", required=True)
    w.add_argument("--images", required=True)
    args = ap.parse_args()
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    {"collect": collect, "fit": fit, "write": write}[args.cmd](args)


if __name__ == "__main__":
    main()
