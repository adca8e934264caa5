"""Which global or task-located edits of the fused image would each task want on images it has not seen?

For each pair and task (full images, the VFN's fusion ``y``), the labelled gradient ``g`` of the task loss with
respect to ``y`` is projected onto a set of candidate edits ``e_k`` of the image (detail at several scales, a shift
towards the infrared or the visible luminance, contrast, tone bands, and the same edits weighted by where the task
network responds), each scaled to a mean |change| of one 8-bit grey level. ``d_k = <g, e_k>`` is the first-order change
of the task loss for that edit at one level. Then, per task, each edit's sign is fitted on one split and scored on
another:

    python research/oracles/edit_directions.py collect --data ../shared/data/msrs --split train --out runs/edits
    python research/oracles/edit_directions.py collect --data ../shared/data/msrs --split val --out runs/edits
    python research/oracles/edit_directions.py score --out runs/edits --fit train --check val --levels 3
    python research/oracles/edit_directions.py write --data ../shared/data/msrs --split val \
        --plan runs/edits/plan_train.json --images runs/edits/val_b3

Units: a (pair, task)'s first-order change divided by ``sum |g| / 255``, the first-order change of the labelled
per-pixel sign oracle at one level: -1 is that oracle, 0 the VFN. One edit applied to every image of a task with the
sign fitted on the fit split is what a per-task customisation of that kind could give on unseen images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from oracle_customisation import (  # the script's own folder is on sys.path
    add_fit_arguments,
    add_split_arguments,
    labelled_pass,
    network_for,
    write_customisations,
)

from cldyn.data.task_bank import load_task_bank  # noqa: E402
from cldyn.inference.sources import image_source  # noqa: E402
from cldyn.model.color import luma_of  # noqa: E402
from cldyn.model.ops import unsharp  # noqa: E402
from cldyn.model.rsc import CLDyN  # noqa: E402
from cldyn.model.task_encoder import response_maps  # noqa: E402
from cldyn.model.tone import tone_hats  # noqa: E402
from cldyn.runtime import progress_bar  # noqa: E402
from cldyn.weights import load_vfn_or_shipped  # noqa: E402

TASKS = ("detection", "segmentation", "saliency")
TONE_KNOTS = 8


def edits(y: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, response: torch.Tensor) -> dict[str, torch.Tensor]:
    """Candidate edits of the fused luminance ``y`` ``(1, 1, H, W)``, each scaled to a mean |change| of one level.
    ``response``: where the task network responds, ``(1, 1, H, W)`` in [0, 1]."""
    base = {f"detail_s{s}": unsharp(y, 1.0, float(s)) - y for s in (1, 2, 4, 8)}
    base |= {"to_ir": ir - y, "to_vis": vis_y - y, "ir_hot": torch.relu(ir - y), "contrast": y - y.mean(),
             "midtones": y * (1 - y), "brighten": torch.ones_like(y)}
    out = dict(base)
    for name in ("detail_s1", "detail_s2", "detail_s4", "to_ir", "to_vis", "contrast", "brighten"):
        out[f"R_{name}"] = response * base[name]
        out[f"notR_{name}"] = (1 - response) * base[name]
    hats = tone_hats(y, TONE_KNOTS)  # (1, K, H*W)
    for k in range(TONE_KNOTS):
        out[f"tone{k}"] = hats[:, k].view_as(y)
    return {k: v / (255.0 * v.abs().mean().clamp_min(1e-12)) for k, v in out.items()}


def task_response(features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Where the task network responds: its features' channel RMS, resized to ``y``'s size, scaled to a maximum of
    1: ``(1, 1, H, W)``."""
    r = F.interpolate(response_maps(features)[:, :1], size=y.shape[-2:], mode="bilinear", align_corners=False)
    return r / r.amax().clamp_min(1e-12)


def collect(args: argparse.Namespace) -> None:
    model = CLDyN(load_vfn_or_shipped(None)).eval()  # only its base (VFN) fusion is used
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks.split(","):
        adapter = network_for(task, args.networks)
        bank = load_task_bank(task, args.data, args.split, image_source("pair"), adapter.config, print)
        rows, oracle, names, keys = [], [], [], None
        for it in progress_bar(bank.items[:args.limit], desc=f"{args.split} {task}", unit="pair"):
            ir, vis, base_y, feats, _, grad = labelled_pass(model, task, adapter, it)
            with torch.no_grad():
                e = edits(base_y, ir, luma_of(vis), task_response(feats, base_y))
            keys = keys or list(e)
            rows.append(torch.stack([(grad * e[k]).sum() for k in keys]))
            oracle.append(float(grad.abs().sum()) / 255.0)
            names.append(it.name)
        torch.save({"d": torch.stack(rows), "oracle": torch.tensor(oracle), "edits": keys, "names": names},
                   out / f"{Path(args.split).stem}_{task}.pt")


def score(args: argparse.Namespace) -> None:
    out = Path(args.out)
    report: dict = {}
    plan: dict = {}
    for task in TASKS:
        fit, check = torch.load(out / f"{args.fit}_{task}.pt"), torch.load(out / f"{args.check}_{task}.pt")
        keys = fit["edits"]
        u_fit = fit["d"] / fit["oracle"][:, None]  # (N, K) first-order change per image, oracle units
        u_chk = check["d"] / check["oracle"][:, None]
        sign = -u_fit.mean(0).sign()  # the per-task sign fitted on the fit split
        rows = []
        for k, name in enumerate(keys):
            rows.append({"edit": name, "sign": int(sign[k]), "fit": float(sign[k] * u_fit[:, k].mean()),
                         "check": float(sign[k] * u_chk[:, k].mean()),
                         "check_share_helped": float((sign[k] * u_chk[:, k] < 0).float().mean()),
                         "check_oracle": float(-u_chk[:, k].abs().mean())})
        rows.sort(key=lambda r: r["check"])
        report[task] = rows
        best = min(rows, key=lambda r: r["fit"])  # chosen on the fit split only
        plan[task] = {best["edit"]: best["sign"] * args.levels}
        print(f"{task}: best edit on {args.fit}: {best['edit']} ({best['sign']:+d}), {args.fit} {best['fit']:+.4f}, "
              f"{args.check} {best['check']:+.4f}")
        print(f"\n{task} ({len(u_fit)} fit, {len(u_chk)} check pairs): edit, fitted sign, fit, check, share of check "
              "pairs helped, per-image sign oracle of that edit on check")
        for r in rows[:args.top]:
            print(f"  {r['edit']:18s} {r['sign']:+d}  {r['fit']:+.4f}  {r['check']:+.4f}  {r['check_share_helped']:.2f}"
                  f"  {r['check_oracle']:+.4f}")
    (out / f"score_{args.fit}_{args.check}.json").write_text(json.dumps(report, indent=1))
    (out / f"plan_{args.fit}.json").write_text(json.dumps(plan, indent=1))
    print("wrote", out / f"score_{args.fit}_{args.check}.json", "and", out / f"plan_{args.fit}.json", plan)


def write(args: argparse.Namespace) -> None:
    """Each task's planned edits (``{task: {edit: levels}}``) applied to the VFN fusion of every pair of a split,
    written as colour images into ``images/task``."""
    plan = json.loads(Path(args.plan).read_text())

    def customise(task, ir, vis, base_y, feats):
        e = edits(base_y, ir, luma_of(vis), task_response(feats, base_y))
        return (base_y + sum(a * e[k] for k, a in plan[task].items())).clamp(0, 1)

    tasks = [t for t in args.tasks.split(",") if t in plan]  # the planned tasks, of those asked for
    write_customisations(CLDyN(load_vfn_or_shipped(None)).eval(), args.data, args.split, tasks, args.images,
                         customise, args.limit, {"plan": plan}, args.networks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    add_split_arguments(c)
    c.add_argument("--out", required=True)
    s = sub.add_parser("score")
    add_fit_arguments(s)  # --levels: the plan's mean |change|
    s.add_argument("--top", type=int, default=12)
    w = sub.add_parser("write")
    add_split_arguments(w)
    w.add_argument("--plan", required=True)
    w.add_argument("--images", required=True)
    args = ap.parse_args()
    if args.cmd in ("collect", "write"):
        torch.set_num_threads(args.threads)
    {"collect": collect, "score": score, "write": write}[args.cmd](args)


if __name__ == "__main__":
    main()
