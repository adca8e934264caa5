"""Predictions and metrics of a task network over a bank of labelled images, plain or through CLDyN."""

from __future__ import annotations

from typing import Any

import torch

from cldyn.data.task_bank import TaskBank
from cldyn.model.ops import as_rgb, pad_to_multiple
from cldyn.model.rsc import CLDyN
from cldyn.runtime import progress_bar
from cldyn.tasks import TaskAdapter

# Metric used to pick the best epoch, and whether higher is better.
PRIMARY_METRIC: dict[str, tuple[str, bool]] = {
    "segmentation": ("miou", True),
    "saliency": ("s_measure", True),
    "detection": ("map50_95", True),
}


def unpad_prediction(pred: Any, h: int, w: int) -> Any:
    """One image's prediction on a bottom/right-padded input, brought back to the original ``h`` x ``w``: maps are
    cropped; detection boxes (padded-image pixels equal original pixels) are clamped and the size recorded."""
    if isinstance(pred, torch.Tensor):
        return pred[..., :h, :w].cpu()
    d = dict(pred)
    d["size"] = (h, w)
    if "boxes" in d and len(d["boxes"]):
        d["boxes"] = d["boxes"].clone()
        d["boxes"][:, 0::2] = d["boxes"][:, 0::2].clamp(0, w)
        d["boxes"][:, 1::2] = d["boxes"][:, 1::2].clamp(0, h)
    return d


@torch.no_grad()
def predict_bank(adapter: TaskAdapter, bank: TaskBank, multiple: int = 32, progress: bool = False) -> list[Any]:
    """Predictions for every image of a bank at full size (padded to a multiple of 32, cropped back)."""
    adapter.model.eval()
    preds = []
    for it in progress_bar(bank.items, disable=not progress, desc="predict", unit="img", leave=False):
        x, (h, w) = pad_to_multiple(it.image[None].float() / 255.0, multiple)
        preds.append(unpad_prediction(adapter.predict(x.to(adapter.device))[0], h, w))
    return preds


def evaluate_bank(adapter: TaskAdapter, bank: TaskBank, progress: bool = False) -> dict[str, Any]:
    preds = predict_bank(adapter, bank, progress=progress)
    return adapter.evaluate(preds, [it.label for it in bank.items])


@torch.no_grad()
def predict_cldyn(model: CLDyN, adapter: TaskAdapter, bank: TaskBank, limit: int | None = None,
                  customised: bool = True, strength: float | str = 1.0, progress: bool = False) -> list[Any]:
    """Predictions of ``adapter`` on the pairs of a ``pair``-source bank fused by CLDyN customised for it at
    ``strength`` (or by the plain VFN with ``customised=False``)."""
    model.eval()
    device = next(model.rsc.parameters()).device
    preds = []
    for it in progress_bar(bank.items[:limit], disable=not progress, desc="fuse and predict", unit="img", leave=False):
        x, (h, w) = pad_to_multiple(it.image[None].float().to(device) / 255.0, 32)
        ir, vis = x[:, :1], x[:, 1:]
        fused = model.fuse(ir, vis, adapter if customised else None, strength=strength)
        preds.append(unpad_prediction(adapter.predict(as_rgb(fused))[0], h, w))
    return preds


def evaluate_cldyn(model: CLDyN, adapter: TaskAdapter, bank: TaskBank, limit: int | None = None,
                   customised: bool = True) -> dict[str, Any]:
    """Task metrics on images fused by CLDyN customised for ``adapter`` (or plain VFN with ``customised=False``)."""
    preds = predict_cldyn(model, adapter, bank, limit, customised)
    return adapter.evaluate(preds, [it.label for it in bank.items[:limit]])
