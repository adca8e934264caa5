"""Does test-time averaging lift a saliency network's max F-beta? Flips, scales, and several networks together.

Averaging a network's logits over a horizontal flip and several input scales, or over several networks, is the
usual last lever on a salient-object metric. This measures what each gives on a split, before anyone ships one:

    python research/tasks/saliency_tta.py --data ../shared/data/msrs --input runs/msrs_vfn_new \
        [--weights shipped runs/task_saliency_lite1/best.safetensors ...] [--json OUT]

Prints max F-beta, S-measure and MAE for each network alone, with the flip, with the scales, with both, and (with
several ``--weights``) for all of them averaged, plain and with the flip. Logits are averaged before the sigmoid.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cldyn.data.task_bank import load_task_bank
from cldyn.inference.sources import image_source
from cldyn.model.ops import pad_to_multiple
from cldyn.tasks import load_task_for

SCALES = (0.75, 1.0, 1.25)


@torch.no_grad()
def view_logits(adapter, image: torch.Tensor, scale: float, flip: bool) -> torch.Tensor:
    """The saliency logit ``(1, H, W)`` of ``image`` ``(1, 3, H, W)`` in [0, 1] seen at ``scale``, mirrored or not,
    brought back to the image's size and orientation."""
    h, w = image.shape[-2:]
    x = image if scale == 1.0 else F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False)
    x = x.flip(-1) if flip else x
    xp, (hh, ww) = pad_to_multiple(x, 32)
    logit = adapter.forward(xp)[0][..., :hh, :ww]
    logit = logit.flip(-1) if flip else logit
    return F.interpolate(logit, size=(h, w), mode="bilinear", align_corners=False)[0]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="dataset root")
    ap.add_argument("--split", default="val")
    ap.add_argument("--input", default="fused", help="image source (as eval-task --source: vfn, visible, a folder)")
    ap.add_argument("--weights", nargs="+", default=["shipped"],
                    help="saliency networks ('shipped': the shipped one)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    adapters = [load_task_for("saliency", None if w == "shipped" else w) for w in args.weights]
    for a in adapters:
        a.model.eval()
    bank = load_task_bank("saliency", args.data, args.split, image_source(args.input), adapters[0].config,
                          lambda s: None)
    views = [(s, f) for s in SCALES for f in (False, True)]
    # logits[network][view] -> one (1, H, W) map per image
    logits = [{v: [] for v in views} for _ in adapters]
    for it in bank.items:
        image = it.image[None].float() / 255.0
        for net, adapter in enumerate(adapters):
            for v in views:
                logits[net][v].append(view_logits(adapter, image, *v))
    targets = [it.label for it in bank.items]

    def score(nets: Sequence[int], chosen: Sequence[tuple[float, bool]]) -> dict[str, float]:
        preds = [torch.sigmoid(torch.stack([logits[n][v][i] for n in nets for v in chosen]).mean(0))
                 for i in range(len(targets))]
        m = adapters[0].evaluate(preds, targets)
        return {k: round(float(m[k]), 4) for k in ("max_f", "s_measure", "mae")}

    combos = {"plain": [(1.0, False)], "flip": [(1.0, False), (1.0, True)],
              "scales": [(s, False) for s in SCALES], "scales+flip": views}
    result: dict[str, dict[str, float]] = {}
    for net, name in enumerate(args.weights):
        for label, chosen in combos.items():
            result[f"{name} {label}"] = score([net], chosen)
    if len(adapters) > 1:
        result["all networks"] = score(range(len(adapters)), combos["plain"])
        result["all networks flip"] = score(range(len(adapters)), combos["flip"])
    for label, m in result.items():
        print(f"{label:60s} max F {m['max_f']:.4f}  S {m['s_measure']:.4f}  MAE {m['mae']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": len(targets), "input": args.input, "weights": args.weights, "results": result}, f, indent=1)


if __name__ == "__main__":
    main()
