"""A task network's prediction drawn on an image: boxes (detection), a class overlay (segmentation), the saliency
map (saliency), with a legend of the classes drawn. Used by the demo, the experiment gallery and ``cldyn serve``."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from cldyn.model.ops import pad_to_multiple
from cldyn.tasks.base import TaskAdapter
from cldyn.tasks.evaluation import unpad_prediction

# Class colours (index 0, background, black), RGB in [0, 1].
PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230]], dtype=np.float32) / 255.0
BOX_SCORE = 0.25  # detections drawn from this confidence up
SWATCH, ROW = 12, 18  # legend: colour square side and row height, pixels
LEGEND_MIN_SIZE = (96, 160)  # no legend on images smaller than this (height, width): it would hide them


def draw_legend(rgb: np.ndarray, entries: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """``rgb`` ``(H, W, 3)`` in [0, 1] with a legend in its top-left corner: one row per ``(name, colour)`` entry, a
    colour square and the name, on a dark box. No entries, or an image under :data:`LEGEND_MIN_SIZE`: the image
    unchanged."""
    if not entries or rgb.shape[0] < LEGEND_MIN_SIZE[0] or rgb.shape[1] < LEGEND_MIN_SIZE[1]:
        return rgb
    img = np.ascontiguousarray((rgb * 255).round().astype(np.uint8))
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    width = max(cv2.getTextSize(name, font, scale, 1)[0][0] for name, _ in entries) + SWATCH + 12
    cv2.rectangle(img, (0, 0), (width, ROW * len(entries) + 4), (20, 20, 20), -1)
    for k, (name, colour) in enumerate(entries):
        top = 4 + k * ROW
        cv2.rectangle(img, (4, top), (4 + SWATCH - 1, top + SWATCH - 1), tuple(int(c * 255) for c in colour), -1)
        cv2.putText(img, name, (SWATCH + 8, top + SWATCH - 2), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img.astype(np.float32) / 255


def _name(class_names: Sequence[str] | None, index: int) -> str:
    return class_names[index] if class_names and 0 <= index < len(class_names) else f"class {index}"


def draw_prediction(task: str, rgb: np.ndarray, pred, class_names: Sequence[str] | None = None) -> np.ndarray:
    """``rgb`` ``(H, W, 3)`` in [0, 1] with ``pred`` (one image's unpadded prediction of a built-in task) drawn, and
    for detection and segmentation a legend of the classes drawn (named by ``class_names``, the network's)."""
    h, w = rgb.shape[:2]
    if task == "detection":
        img = np.ascontiguousarray((rgb * 255).astype(np.uint8))
        keep = pred["scores"] >= BOX_SCORE
        labels = [int(lab) for lab in pred["labels"][keep].tolist()]
        for (x1, y1, x2, y2), lab in zip(pred["boxes"][keep].tolist(), labels, strict=True):
            colour = tuple(int(c * 255) for c in PALETTE[1 + lab % 8])
            cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), colour, 2)
        legend = [(_name(class_names, lab), PALETTE[1 + lab % 8]) for lab in sorted(set(labels))]
        return draw_legend(img.astype(np.float32) / 255, legend)
    if task == "segmentation":
        lab = np.asarray(pred).reshape(h, w)
        mask = (lab > 0)[:, :, None]
        drawn = np.where(mask, 0.45 * rgb + 0.55 * PALETTE[lab % len(PALETTE)], rgb).astype(np.float32)
        present = [int(c) for c in np.unique(lab) if c > 0]
        return draw_legend(drawn, [(_name(class_names, c), PALETTE[c % len(PALETTE)]) for c in present])
    if task == "saliency":
        return np.repeat(np.asarray(pred, dtype=np.float32).reshape(h, w)[:, :, None], 3, axis=2)
    raise ValueError(f"no drawing for task {task!r}")


def prediction_overlay(adapter: TaskAdapter, rgb: np.ndarray) -> np.ndarray:
    """Run ``adapter`` on ``rgb`` ``(H, W, 3)`` in [0, 1] (padded to multiples of 32 and cropped back) and draw its
    prediction on the image."""
    x, (h, w) = pad_to_multiple(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float(), 32)
    with torch.inference_mode():
        pred = unpad_prediction(adapter.predict(x.to(adapter.device))[0], h, w)
    if isinstance(pred, torch.Tensor):
        pred = pred.cpu().numpy()
    return draw_prediction(adapter.task, rgb, pred, adapter.config.get("class_names"))
