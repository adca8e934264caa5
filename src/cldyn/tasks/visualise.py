"""A task network's prediction drawn on an image: boxes (detection), a class overlay (segmentation), the saliency
map (saliency). Used by the experiment gallery and ``cldyn serve``."""

from __future__ import annotations

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


def draw_prediction(task: str, rgb: np.ndarray, pred) -> np.ndarray:
    """``rgb`` ``(H, W, 3)`` in [0, 1] with ``pred`` (one image's unpadded prediction of a built-in task) drawn."""
    h, w = rgb.shape[:2]
    if task == "detection":
        img = np.ascontiguousarray((rgb * 255).astype(np.uint8))
        keep = pred["scores"] >= BOX_SCORE
        for (x1, y1, x2, y2), lab in zip(pred["boxes"][keep].tolist(), pred["labels"][keep].tolist(), strict=True):
            colour = tuple(int(c * 255) for c in PALETTE[1 + int(lab) % 8])
            cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), colour, 2)
        return img.astype(np.float32) / 255
    if task == "segmentation":
        lab = np.asarray(pred).reshape(h, w)
        mask = (lab > 0)[:, :, None]
        return np.where(mask, 0.45 * rgb + 0.55 * PALETTE[lab % len(PALETTE)], rgb).astype(np.float32)
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
    return draw_prediction(adapter.task, rgb, pred)
